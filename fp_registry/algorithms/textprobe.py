"""TextProbe: DeepCore-style core points for token-id classifiers, found by discrete search, matched on log-probs."""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from fp_registry.algorithms import textprobe_confer as confer
from fp_registry.errors import NotApplicableError, ShapeMismatchError, UsageError
from fp_registry.methods import Built, Method, Owner
from fp_registry.suspect import Suspect, match_rate


class TextProbe(Method):
    """Black-box fingerprint of sequence classifiers whose inputs are token ids (our design; methods.md "token").

    Build: seeds are owner sentences and uniformly random id sequences (half each, ``seeds="mix"``). Each seed
    gets a target class (``target="other"``: a random class the owner does not predict; ``"own"``: its own) and
    a greedy discrete search: every round proposes ``candidates`` single-token substitutions per unfinished
    point (a random position, a random id seen in the owner's data), queries the owner once for all of them and
    keeps the best if it raises log p_target; a point stops once p_target >= ``gamma``. Only forward queries of
    the owner are used, so the owner may itself be a black box. Score: mean cosine between the suspect's and
    the owner's centred log-probabilities on the points (as DeepCore's soft similarity), clipped at 0.
    Ids are never cast to float; the first and last positions ([CLS]/[SEP]) stay as in the seed (``keep_ends``).

    Option ``confer=K`` (needs a zoo's train split; off by default, see benchmarks/results/text.md, "Label-only
    extraction of the LM", for why):
    ``K`` conferrable rows are kept from ``confer_candidates`` random-id rows (:mod:`textprobe_confer`), scored
    by top-1 agreement with the owner, and the score becomes ``Phi(max(z_soft, z_agree))``: each statistic as a
    z-score against train independents of lineages that took no part in the selection, so a copy that keeps
    either the owner's log-prob profile (fine-tuning, pruning) or only its labels (label-only extraction) stands
    out. Without it the score is the soft similarity alone, as above.
    """

    name = "textprobe"
    summary = "token-id core points by greedy substitution + centred log-prob similarity (sequence classifiers)"
    tasks = ("classification",)
    zoo_use = "calibrate"
    input_kinds = ("int64",)
    fidelity = "our design (DeepCore-style core points, discrete search for token inputs)"
    defaults: dict[str, Any] = {"n_points": 64, "gamma": 0.9, "steps": 30, "candidates": 16, "seeds": "mix",
                                "target": "other", "keep_ends": True, "confer": 0, "confer_candidates": 3000}
    default_threshold = 0.5

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        choices = {"seeds": ("data", "noise", "mix"), "target": ("own", "other")}
        for key, allowed in choices.items():
            if self.settings[key] not in allowed:
                raise UsageError(f"textprobe setting {key}={self.settings[key]!r} is not valid",
                                 f"use one of: {', '.join(allowed)}")

    def check_owner(self, owner: Owner) -> None:
        super().check_owner(owner)
        if owner.input_kind != "int64":
            raise NotApplicableError("method textprobe needs token-id inputs (int64 sequences); this owner takes "
                                     "continuous inputs", "use deepcore, ipguard or metav for it")
        if owner.data is None:
            raise NotApplicableError("method textprobe needs owner sentences (data=token ids) to know the vocabulary")

    def build(self, owner: Owner, zoo: Any, seed: int, progress: bool) -> Built:
        gen = torch.Generator().manual_seed(seed)
        data = owner.data.reshape(len(owner.data), -1)
        lo_pos, hi_pos = (1, data.shape[1] - 1) if self.settings["keep_ends"] else (0, data.shape[1])
        pool = torch.unique(data[:, lo_pos:hi_pos])  # ids a real sentence can hold at the editable positions
        x = self.seed_points(owner, data, pool, lo_pos, hi_pos, gen)
        query = Suspect(owner.model, name="owner")
        own = self._logp(query, x, owner.output_dim).argmax(1)
        targets = own if self.settings["target"] == "own" else other_class(own, owner.output_dim, gen)
        x = self.search_points(query, owner.output_dim, x, targets, pool, (lo_pos, hi_pos), gen)
        logp = self._logp(query, x, owner.output_dim)
        rows = torch.arange(len(x))
        info = {"reached_gamma": float((logp[rows, targets].exp() >= float(self.settings["gamma"])).float().mean()),
                "on_target": float((logp.argmax(1) == targets).float().mean()), "max_token": int(data.max())}
        tensors = {"core": {"x": x, "probs": logp.exp(), "targets": targets}}
        if int(self.settings["confer"]) > 0:
            self._add_conferrable(tensors, info, query, owner, zoo, gen)
        info["owner_queries"] = query.n_queries
        return Built(tensors, info)

    def _add_conferrable(self, tensors: dict[str, Any], info: dict[str, Any], query: Suspect, owner: Owner,
                         zoo: Any, gen: torch.Generator) -> None:
        """The ``confer`` rows chosen on the zoo's train split, and both statistics' reference (see the class doc)."""
        if not confer.usable(zoo):
            warnings.warn("textprobe confer>0 needs a zoo's train split (2+ copies, 4+ independents): fingerprinting "
                          "without conferrable rows; pass zoo= or let fingerprint() build one from data=",
                          stacklevel=3)
            return
        data = owner.data.reshape(len(owner.data), -1)
        rows = confer.candidate_rows(int(self.settings["confer_candidates"]), data.shape[1], int(data.max()) + 1, gen)
        x, labels, held_back = confer.select(query, zoo, rows.reshape(-1, *owner.input_shape),
                                             int(self.settings["confer"]))
        tensors["confer"] = {"x": x, "labels": labels}
        stats = [self._statistics(tensors, Suspect(m, "reference"), owner.output_dim) for m in held_back]
        info["confer_reference"] = confer.reference(stats).to_dict()

    def seed_points(self, owner: Owner, data: torch.Tensor, pool: torch.Tensor, lo: int, hi: int,
               gen: torch.Generator) -> torch.Tensor:
        n = int(self.settings["n_points"])
        n_data = {"data": n, "noise": 0, "mix": n // 2}[self.settings["seeds"]]
        rows = data[torch.randint(len(data), (n,), generator=gen)].clone()
        noise = pool[torch.randint(len(pool), (n - n_data, hi - lo), generator=gen)]
        rows[n_data:, lo:hi] = noise  # random ids between the sentence's own first and last tokens
        return rows.reshape(n, *owner.input_shape)

    @staticmethod
    def _logp(query: Suspect, x: torch.Tensor, output_dim: int) -> torch.Tensor:
        return query.outputs(x, "classification", output_dim).clamp_min(1e-12).log()

    def search_points(self, query: Suspect, output_dim: int, x: torch.Tensor, targets: torch.Tensor,
                      pool: torch.Tensor, span: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
        """Greedy single-token substitutions that raise log p_target, one batched owner query per round."""
        x, c = x.clone(), int(self.settings["candidates"])
        log_gamma = torch.tensor(float(self.settings["gamma"])).log()
        best = self._logp(query, x, output_dim)[torch.arange(len(x)), targets]
        for _ in range(int(self.settings["steps"])):
            active = (best < log_gamma).nonzero().flatten()
            if len(active) == 0:
                break
            cand = x[active].repeat_interleave(c, 0)
            pos = torch.randint(span[0], span[1], (len(cand),), generator=gen)
            cand[torch.arange(len(cand)), pos] = pool[torch.randint(len(pool), (len(cand),), generator=gen)]
            tgt = targets[active].repeat_interleave(c)
            got = self._logp(query, cand, output_dim)[torch.arange(len(cand)), tgt].reshape(len(active), c)
            top, arg = got.max(1)
            better = top > best[active]
            chosen = cand.reshape(len(active), c, -1)[torch.arange(len(active)), arg]
            x[active[better]] = chosen[better].reshape(-1, *x.shape[1:])
            best[active[better]] = top[better]
        return x

    def score(self, fp: Any, suspect: Any) -> tuple[float, dict[str, Any]]:
        core = fp.tensors["core"]
        check_vocab(suspect, int(fp.info.get("max_token", int(core["x"].max()))))
        soft, agree = self._statistics(fp.tensors, suspect, int(fp.spec["output_dim"]))
        evidence = {"soft_similarity": soft, "space": "logprob", "n_points": len(core["x"])}
        if agree is None:
            return max(soft, 0.0), evidence
        z_soft, z_agree = confer.Reference(**fp.info["confer_reference"]).z(soft, agree)
        z = max(z_soft, z_agree)
        evidence.update({"agreement": agree, "z_soft": z_soft, "z_agreement": z_agree,
                         "n_conferrable": len(fp.tensors["confer"]["x"])})
        return 0.5 * math.erfc(-z / math.sqrt(2)), evidence  # Phi(z): one minus a normal-tail p-value

    @staticmethod
    def _statistics(tensors: dict[str, Any], suspect: Any, output_dim: int) -> tuple[float, float | None]:
        """(soft similarity on the core points, top-1 agreement on the conferrable rows or None), one query batch."""
        core, extra = tensors["core"], tensors.get("confer")
        x = core["x"] if extra is None else torch.cat([core["x"], extra["x"]])
        try:
            probs = suspect.outputs(x, "classification", output_dim)
        except IndexError as exc:  # an embedding table smaller than the fingerprint's ids
            raise ShapeMismatchError(f"suspect {suspect.name} rejects token ids up to {int(x.max())}: its "
                                     f"vocabulary is smaller than the owner's ({str(exc)[:80]})") from exc
        n = len(core["x"])
        soft = float(F.cosine_similarity(_centred_log(probs[:n]), _centred_log(core["probs"]), dim=1).mean())
        return soft, None if extra is None else match_rate(probs[n:].argmax(1), extra["labels"])


def check_vocab(suspect: Any, max_token: int) -> None:
    """A white-box suspect whose config names a smaller vocabulary gets a clear error before any query."""
    module = getattr(suspect, "module", None)
    config = getattr(getattr(module, "bert", module), "config", None)
    vocab = config.get("vocab_size") if isinstance(config, dict) else getattr(config, "vocab_size", None)
    if vocab is not None and int(vocab) <= max_token:
        raise ShapeMismatchError(f"suspect {suspect.name} has a vocabulary of {vocab} tokens, the fingerprint "
                                 f"queries ids up to {max_token}", "check the suspect against the owner's tokeniser")


def _centred_log(probs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities minus their row mean (softmax-invariant; keeps the owner's ranking of the other classes)."""
    logp = probs.clamp_min(1e-12).log()
    return logp - logp.mean(1, keepdim=True)


def other_class(own: torch.Tensor, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    j = torch.randint(n_classes - 1, (len(own),), generator=gen)
    return j + (j >= own).long()  # uniform over the classes the owner does not predict
