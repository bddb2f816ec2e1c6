"""White-box evidence for a (owner, suspect) pair with weights: REEF-style CKA on hidden states, permutation-invariant
weight Grams, each turned into a p-value by a null fitted on independent models."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import UsageError
from .modelio import program_graph

P_FLOOR = 1e-12  # smallest normal-tail p-value reported
MAX_ROWS = 2048  # token rows per layer kept for CKA: enough for a stable estimate, cheap on CPU


# ----------------------------------------------------------------------------------------------- representations
def _transformer(model: nn.Module) -> tuple[nn.Module | None, int]:
    """The wrapped transformers model (ours keep it as ``.bert``) and its padding id, or (None, 0)."""
    inner = getattr(model, "bert", model)
    if hasattr(inner, "config") and hasattr(getattr(inner, "config"), "num_hidden_layers"):
        pad = getattr(model, "pad_id", getattr(inner.config, "pad_token_id", 0))
        return inner, int(pad or 0)
    return None, 0


def hidden_states(model: nn.Module, x: torch.Tensor, max_rows: int = MAX_ROWS, seed: int = 0,
                  layers: str = "auto") -> list[torch.Tensor]:
    """Per-layer representations on ``x``, each (rows, features) float64.

    Token inputs are read at the non-padding tokens, a fixed random subset of at most ``max_rows`` (the same rows for
    any model, since they depend on ``x`` only). Transformers models (``layers="auto"``): every hidden state
    (embeddings + each block). Otherwise, and with ``layers="linear"``: the output of every Linear / Conv layer
    (exported programs: every linear / convolution op of their graph), per input or per kept token.
    """
    inner, pad = _transformer(model)
    try:
        model.eval()
    except NotImplementedError:  # loaded torch.export programs refuse eval(); they are frozen in eval mode
        pass
    with torch.no_grad():
        rows = _token_rows(x, pad, max_rows, seed) if not x.is_floating_point() else None
        if inner is not None and layers == "auto":
            ids = x.long()
            out = inner(input_ids=ids, attention_mask=(ids != pad).long(), output_hidden_states=True)
            return [h.reshape(-1, h.shape[-1])[rows].double() for h in out.hidden_states]
        graph = program_graph(model)
        return _graph_outputs(graph, x, rows) if graph is not None else _hooked_outputs(model, x, rows)


def _token_rows(x: torch.Tensor, pad: int, max_rows: int, seed: int) -> torch.Tensor:
    """Indices of the non-padding tokens of ``x`` (flattened), a fixed random subset of at most ``max_rows``."""
    rows = (x.long() != pad).flatten().nonzero().flatten()
    if len(rows) > max_rows:
        gen = torch.Generator().manual_seed(seed)
        rows = rows[torch.randperm(len(rows), generator=gen)[:max_rows].sort().values]
    return rows


def _graph_outputs(graph: Any, x: torch.Tensor, rows: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Outputs of every linear / convolution op of an exported program: one row per input, or for token
    inputs (``rows`` given) one row per kept token of every per-token (3-D) output, as for transformers models.

    Why the graph: an exported program has no ``nn.Linear`` modules to hook (its layers are aten calls on
    parameters), but its graph names those calls, in execution order.
    """
    ops = {torch.ops.aten.linear.default, torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default,
           torch.ops.aten.addmm.default}
    got: list[torch.Tensor] = []

    class Recorder(torch.fx.Interpreter):
        def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
            out = super().call_function(target, args, kwargs)
            if target in ops and isinstance(out, torch.Tensor):
                _keep(got, out, len(x), rows)
            return out

    from .modelio import EXPORT_LOCK

    with EXPORT_LOCK:  # fx interpretation uses process-wide tracing state, as exports and program loads do
        Recorder(graph).run(x)
    return got


def _keep(got: list[torch.Tensor], out: torch.Tensor, n: int, rows: torch.Tensor | None) -> None:
    """One layer's output as rows: per input, or (token inputs) per kept token of a per-token (3-D) output."""
    if rows is None:
        got.append(out.reshape(n, -1).double())
    elif out.ndim == 3:
        got.append(out.reshape(-1, out.shape[-1])[rows].double())


def _hooked_outputs(model: nn.Module, x: torch.Tensor, rows: torch.Tensor | None = None) -> list[torch.Tensor]:
    """What :func:`_graph_outputs` records, from forward hooks on the module's Linear / Conv layers."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    got: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, o: _keep(got, o, len(x), rows)) for m in layers]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return got


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) between row-aligned feature matrices; invariant to rotation and scale."""
    a = a - a.mean(0, keepdim=True)
    b = b - b.mean(0, keepdim=True)
    cross = (b.T @ a).pow(2).sum()
    norm = (a.T @ a).pow(2).sum().sqrt() * (b.T @ b).pow(2).sum().sqrt()
    return float(cross / norm) if float(norm) > 0 else 0.0


def layer_mode(*models: nn.Module) -> str:
    """``linear`` when any model is an exported program (it has no hidden_states API), else ``auto``."""
    return "linear" if any(program_graph(m) is not None for m in models) else "auto"


def cka_evidence(owner: nn.Module, suspect: nn.Module, x: torch.Tensor, layers: str | None = None) -> dict[str, Any]:
    """CKA of every owner layer with every suspect layer; score = mean over owner layers of the best-matching one.

    Why best match: a pruned or distilled suspect may have its layers shifted; REEF compares one chosen layer, we keep
    the whole matrix as evidence and summarise it without assuming the suspect's depth.
    """
    # an exported program has no hidden_states API: then both sides use layer outputs, so a null fitted with
    # in-memory models and a check of exported suspects measure the same statistic
    layers = layers or layer_mode(owner, suspect)
    ho, hs = hidden_states(owner, x, layers=layers), hidden_states(suspect, x, layers=layers)
    if not ho or not hs or ho[0].shape[0] != hs[0].shape[0]:
        return {"score": 0.0, "layers": [], "reason": "no comparable hidden states"}
    mat = np.array([[linear_cka(a, b) for b in hs] for a in ho])
    best = mat.max(1)
    return {"score": float(best.mean()), "best_per_owner_layer": [round(float(v), 4) for v in best],
            "best_suspect_layer": [int(i) for i in mat.argmax(1)]}


def probe_inputs(model: nn.Module, n: int = 64, seq_len: int = 16, seed: int = 0,
                 input_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Owner-free probes: random token ids for token models (no padding, ids from 1), N(0, 1) rows otherwise.

    ``input_shape`` (the owner's, without the batch) wins over ``seq_len`` and the shape read from the model:
    an exported program accepts only the sequence length it was exported with.
    """
    from .methods import _module_input_shape, takes_tokens

    gen = torch.Generator().manual_seed(seed)
    input_shape = input_shape or getattr(model, "example_input_shape", None)  # a program's static sizes
    if takes_tokens(model):
        length = int(input_shape[-1]) if input_shape else seq_len
        return torch.randint(1, _vocab_size(model), (n, length), generator=gen)
    shape = tuple(input_shape) if input_shape else _module_input_shape(model)
    if shape is None:
        raise UsageError("cannot infer the model's input shape for probe inputs",
                         "pass input_shape= to probe_inputs in Python; the CLI reads it from reference model "
                         "directories, a leading nn.Linear or a .pt2 program with static input sizes")
    return torch.randn(n, *shape, generator=gen)


def _vocab_size(model: nn.Module) -> int:
    """From the config, an ``nn.Embedding``, or (exported programs) the first 2-D parameter named like an embedding."""
    inner, _ = _transformer(model)
    if inner is not None:
        return int(inner.config.vocab_size)
    emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if emb is not None:
        return int(emb.num_embeddings)
    named = next((p for name, p in model.named_parameters() if "embed" in name and p.ndim == 2), None)
    if named is None:
        raise UsageError("cannot find the vocabulary size of this token model for probe inputs",
                         "give the model a config with vocab_size, or an nn.Embedding as its first layer")
    return int(named.shape[0])


# ----------------------------------------------------------------------------------------------------- weights
def weight_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """2-D weights of every Linear-like layer, in module order; dynamic-int8 layers are dequantised."""
    found = []
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if callable(w) and not isinstance(w, torch.Tensor):  # torch.ao dynamic quantized Linear: weight() method
            try:
                w = w()
            except (RuntimeError, TypeError):
                continue
            w = w.dequantize() if getattr(w, "is_quantized", False) else w
        # embeddings by type, or by name in exported programs (where they are plain parameters)
        if isinstance(w, torch.Tensor) and w.ndim == 2 and not isinstance(module, nn.Embedding) and "embed" not in name:
            found.append((name, w.detach().double()))
    return found


def _offdiag_corr(g1: torch.Tensor, g2: torch.Tensor) -> float:
    """Pearson correlation of the off-diagonal entries of two Gram matrices.

    Why off-diagonal only: W^T W of any well-scaled matrix is close to c * I, so the diagonal makes unrelated Grams
    look alike (the LayerNorm-cosine trap of methods.md section 9); the off-diagonal couples are what training wrote.
    """
    n = g1.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool)
    a, b = g1[keep], g2[keep]
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a @ b) / denom) if denom > 0 else 0.0


def gram_similarity(w1: torch.Tensor, w2: torch.Tensor) -> float:
    """Best of the two Gram views of a weight pair: W^T W ignores a permutation of the rows (output neurons),
    W W^T one of the columns (input neurons); so permuting the hidden neurons on either side changes nothing."""
    return max(_offdiag_corr(w1.T @ w1, w2.T @ w2), _offdiag_corr(w1 @ w1.T, w2 @ w2.T))


def weight_evidence(owner: nn.Module, suspect: nn.Module) -> dict[str, Any]:
    """Mean Gram similarity over same-shape weight matrices paired in module order (0 when none match)."""
    wo, ws = weight_matrices(owner), weight_matrices(suspect)
    sims = [gram_similarity(a, b) for (_, a), (_, b) in zip(wo, ws) if a.shape == b.shape]
    if not sims:
        return {"score": 0.0, "matched": 0, "reason": "no same-shape weight matrices"}
    return {"score": float(np.mean(sims)), "matched": len(sims), "of": len(wo), "min": float(np.min(sims))}


# --------------------------------------------------------------------------------------------------- p-values
@dataclass
class Null:
    """Scores of independent models for one statistic; turns a suspect's score into p-values.

    ``empirical``: (1 + #{null >= s}) / (1 + n), exact under exchangeability, never below 1 / (n + 1).
    ``normal``: upper tail of a normal fitted to the null's Fisher-z scores (atanh); reaches small p-values with few
    independents, but only as far as the normal shape of the null holds: an extrapolation, reported beside the other
    and never below ``P_FLOOR``.
    """

    scores: list[float] = field(default_factory=list)

    def empirical(self, score: float) -> float | None:
        if not self.scores:
            return None
        return (1 + sum(s >= score for s in self.scores)) / (1 + len(self.scores))

    def normal(self, score: float) -> float | None:
        if len(self.scores) < 2:
            return None
        z = np.arctanh(np.clip(np.asarray(self.scores, dtype=float), -0.999999, 0.999999))
        mu, sd = float(z.mean()), float(z.std(ddof=1)) or 1e-6
        t = (float(np.arctanh(np.clip(score, -0.999999, 0.999999))) - mu) / sd
        # floored: far beyond the null's range the tail is an extrapolation, and 0.0 would claim certainty
        return max(0.5 * math.erfc(t / math.sqrt(2)), P_FLOOR)


def evidence(owner: nn.Module, suspect: nn.Module, x: torch.Tensor, nulls: dict[str, Null] | None = None,
             layers: str | None = None) -> dict[str, Any]:
    """Both white-box statistics for one suspect, with p-values when ``nulls`` (from :func:`fit_nulls`) are given.

    A statistic that is undefined for this pair (``reason`` set: no same-shape weights, no comparable hidden
    states) gets no p-value: its 0.0 is a placeholder, not a value the null can be asked about.
    """
    out = {"cka": cka_evidence(owner, suspect, x, layers), "weights": weight_evidence(owner, suspect)}
    for key, ev in out.items():
        null = (nulls or {}).get(key)
        if null is not None and "reason" not in ev:
            ev["p_empirical"], ev["p_normal"] = null.empirical(ev["score"]), null.normal(ev["score"])
    return out


def fit_nulls(owner: nn.Module, independents: list[nn.Module], x: torch.Tensor,
              layers: str | None = None) -> dict[str, Null]:
    """Nulls of both statistics from independent models (never the suspects that are later tested).

    An independent on which a statistic is undefined (another architecture: no same-shape weights) is left out of
    that statistic's null. Why: its placeholder 0.0 is not a draw of the statistic, and a few of them among
    correlations near 0.5 inflated the null's spread about threefold (digits-mlp zoo 74: an 80 %-pruned copy's
    weight Gram 0.871 against independents' 0.41-0.59 sat only 3.6 spreads out, as if barely unusual).
    """
    scores = [evidence(owner, m, x, layers=layers) for m in independents]
    return {key: Null([s[key]["score"] for s in scores if "reason" not in s[key]]) for key in ("cka", "weights")}


# ------------------------------------------------------------------------------------------ stored with a fingerprint
def reference(owner: nn.Module, independents: list[nn.Module], seed: int = 0, n_probes: int = 32,
              seq_len: int = 16, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """What a later check needs for calibrated white-box evidence: the probe recipe and both nulls.

    Only scores of independent models are kept (no weights, no activations), so the block can sit in a
    fingerprint's manifest; the owner's weights come from the registry at check time.
    """
    x = probe_inputs(owner, n_probes, seq_len, seed, input_shape)
    layers = layer_mode(owner, *independents)
    nulls = fit_nulls(owner, independents, x, layers)
    return {"seed": seed, "n_probes": n_probes, "seq_len": seq_len, "layers": layers,
            "input_shape": list(input_shape) if input_shape else None,
            "nulls": {key: [round(float(s), 6) for s in null.scores] for key, null in nulls.items()}}


def check(ref: dict[str, Any], owner: nn.Module, suspect: nn.Module) -> dict[str, Any]:
    """Both statistics for ``suspect`` with p-values from the stored nulls, compact enough for a report or tags."""
    shape = tuple(ref["input_shape"]) if ref.get("input_shape") else None
    x = probe_inputs(owner, int(ref["n_probes"]), int(ref["seq_len"]), int(ref["seed"]), shape)
    layers = str(ref.get("layers", "auto"))
    nulls = {key: Null(list(s)) for key, s in ref.get("nulls", {}).items()}
    # hidden states cannot be read from an exported program: its CKA is then not the null's statistic, no p-value
    mismatch = layers == "auto" and layer_mode(owner, suspect) == "linear"
    if mismatch:
        layers = "linear"
        nulls.pop("cka", None)
    full = evidence(owner, suspect, x, nulls, layers)
    if mismatch:
        full["cka"]["reason"] = "layer outputs of an exported program; the null was fitted on hidden states"
    keep = ("score", "p_empirical", "p_normal", "matched", "reason")
    return {key: {k: ev[k] for k in keep if k in ev} for key, ev in full.items()}
