"""Robustness of the passport watermark: fine-tuning, pruning, channel permutation, BN folding, ambiguity attacks."""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

import fp_registry as fpr
from fp_registry.algorithms import passport_layers as pl
from fp_registry.algorithms.passport import _accuracy, encode_signature
from fp_registry.cli import _settings
from fp_registry.errors import ArtifactError
from fp_registry.nets import SmallCNN
from fp_registry.scenarios import get_scenario, train_owner
from fp_registry.training import fit


def prune(model: nn.Module, fraction: float) -> nn.Module:
    """Global magnitude pruning of all conv and linear weights."""
    out = copy.deepcopy(model)
    weights = [m.weight for m in out.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if fraction <= 0:
        return out
    cut = torch.cat([w.detach().abs().flatten() for w in weights]).quantile(fraction)
    with torch.no_grad():
        for w in weights:
            w.mul_((w.abs() > cut).float())
    return out


def permute_channels(model: SmallCNN, seed: int = 0) -> SmallCNN:
    """A functionally identical SmallCNN whose conv channels are randomly permuted (layer by layer)."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    feats, prev = list(out.features), None
    with torch.no_grad():
        for conv, norm in zip(feats[0::3], feats[1::3]):
            if not isinstance(conv, nn.Conv2d):
                break
            perm = torch.randperm(conv.out_channels, generator=gen)
            w = conv.weight[:, prev] if prev is not None else conv.weight
            conv.weight.copy_(w[perm])
            for t in [norm.weight, norm.bias] + ([norm.running_mean, norm.running_var]
                                                 if isinstance(norm, nn.BatchNorm2d) else []):
                t.copy_(t[perm])
            prev = perm
        c = len(prev)
        head = out.head.weight.view(out.head.out_features, c, -1)
        out.head.weight.copy_(head[:, prev].reshape(out.head.out_features, -1))
    return out


def fold_bn(model: SmallCNN) -> SmallCNN:
    """The same function with every BatchNorm folded into the preceding conv (a norm-free SmallCNN)."""
    cfg = dict(model.config, norm="none")
    out = SmallCNN(**cfg)
    src, dst = list(model.features), list(out.features)
    with torch.no_grad():
        for conv, bn, tconv in zip(src[0::3], src[1::3], dst[0::3]):
            if not isinstance(conv, nn.Conv2d):
                break
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            tconv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            tconv.bias.copy_(bn.bias - bn.running_mean * scale)
        out.head.load_state_dict(model.head.state_dict())
    return out.eval()


#: the identity an ambiguity attacker claims; its bits are the hash encoding, like the owner's
FORGER = "attacker-2026"


def _start(groups: list[dict[str, torch.Tensor]], mode: str, gen: torch.Generator) -> list[tuple[torch.Tensor, ...]]:
    if mode == "random":  # attack I: fresh passports, uniform in [-1, 1] like the owner's
        return [(torch.rand(g["p_gamma"].shape, generator=gen) * 2 - 1,
                 torch.rand(g["p_beta"].shape, generator=gen) * 2 - 1) for g in groups]
    # attack II (paper): the owner's passports + 1e-3 noise, i.e. an attacker who holds the owner's key
    return [(g["p_gamma"] + 1e-3 * torch.randn(g["p_gamma"].shape, generator=gen),
             g["p_beta"] + 1e-3 * torch.randn(g["p_beta"].shape, generator=gen)) for g in groups]


def _targets(groups: list[dict[str, torch.Tensor]], mode: str, gen: torch.Generator) -> list[torch.Tensor]:
    if mode != "flip":  # the bits the forger must show for a claimable identity
        return [encode_signature(FORGER, len(g["bits"]), i) for i, g in enumerate(groups)]
    out = []  # the paper's attack II target: the owner's bits with 10 % flipped (no identity's encoding)
    for g in groups:
        b = g["bits"].clone()
        idx = torch.randperm(len(b), generator=gen)[: max(1, len(b) // 10)]
        b[idx] = -b[idx]
        out.append(b)
    return out


def ambiguity(deployed: nn.Module, key: Any, x: torch.Tensor, y: torch.Tensor, mode: str, epochs: int = 5,
              seed: int = 0) -> dict[str, Any]:
    """Forge a key for ``deployed`` (weights frozen) and check it with the product's own verification.

    'random' (attack I): fresh passports + MLP trained on data. 'flip' (attack II, paper): owner passports + noise,
    fresh MLP, tuned towards the owner's bits with 10 % flipped. 'claim' (attack II towards an identity): the same,
    tuned towards the encoding of another identity, the only bits a forger could claim under the hash encoding.
    """
    gen = torch.Generator().manual_seed(seed)
    groups = [key.tensors[f"layer{i}"] for i in range(int(key.info["n_layers"]))]
    pps = [(a.clone().requires_grad_(True), b.clone().requires_grad_(True)) for a, b in _start(groups, mode, gen)]
    targets = _targets(groups, mode, gen)
    work, duals = pl.attach(deployed, pps)
    for p in work.parameters():
        p.requires_grad_(False)
    params = [t for pair in pps for t in pair] + [p for d in duals for p in d.mlp.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=0.01)
    pl.set_mode(duals, 1)
    work.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            loss = F.cross_entropy(work(x[idx]), y[idx])
            if mode != "random":
                loss = loss + sum(F.relu(0.1 - t * d.scales()[0]).sum() for d, t in zip(duals, targets))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        hits = torch.cat([(torch.sign(d.scales()[0]) == g["bits"]).float() for d, g in zip(duals, groups)])
        hit_t = torch.cat([(torch.sign(d.scales()[0]) == t).float() for d, t in zip(duals, targets)])
        cos = torch.stack([F.cosine_similarity(d.p_gamma.flatten(), g["p_gamma"].flatten(), dim=0)
                           for d, g in zip(duals, groups)]).mean()
    return {"forged_private_accuracy": _accuracy(work, key.tensors["heldout"]["x"], key.tensors["heldout"]["y"]),
            "forged_sign_vs_owner_bits": float(hits.mean()), "forged_sign_vs_attack_target": float(hit_t.mean()),
            "passport_cosine_to_owner": float(cos), **_forger_verdict(key, deployed, duals, targets, mode)}


def _forger_verdict(key: Any, deployed: nn.Module, duals: list[Any], targets: list[torch.Tensor],
                    mode: str) -> dict[str, Any]:
    """Verify ``deployed`` with the forged key, as a forger would have to in a dispute."""
    forged = copy.copy(key)
    forged.info = dict(key.info, signature=key.info["signature"] if mode == "flip" else FORGER)
    forged.tensors = {k: dict(g) for k, g in key.tensors.items()}
    for i, d in enumerate(duals):
        g = forged.tensors[f"layer{i}"]
        g.update(p_gamma=d.p_gamma.detach().clone(), p_beta=d.p_beta.detach().clone(), bits=targets[i])
        g.update({f"mlp.{k}": v.detach().clone() for k, v in d.mlp.state_dict().items()})
        g.update({f"norm.{k}": v.detach().clone() for k, v in d.private.state_dict().items()})
    try:
        v = forged.verify(deployed)
    except ArtifactError:
        return {"forger_key": "rejected (bits are not the encoding of any signature)", "forger_match": False}
    return {"forger_key": f"sign {v.score:.3f}, p {v.p_value:.2g}", "forger_match": bool(v.is_match)}


def evaluate(key: Any, model: nn.Module, tx: torch.Tensor, ty: torch.Tensor) -> dict[str, Any]:
    v = key.verify(model)
    e = v.evidence
    return {"deployment_accuracy": _accuracy(model, tx, ty), "sign_detection": e.get("sign_detection"),
            "p_value": v.p_value, "private_accuracy": e.get("private_accuracy"),
            "trigger_accuracy": e.get("trigger_accuracy"), "is_match": v.is_match,
            "layers_realigned": e.get("layers_realigned")}


def control(base: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int,
            settings: dict[str, Any]) -> nn.Module:
    """The owner trained exactly as protect trains it (same split, optimiser, schedule, epochs), minus the passport
    branch, sign loss and trigger set: the "same model trained without protection" the 1-point goal compares to."""
    from fp_registry.algorithms.passport import Passport

    method = Passport(**{**settings, "epochs": epochs})
    s = method.settings
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)  # the same draw protect makes first
    idx = perm[: int(len(x) * (1 - float(s["holdout"])))]
    xs, ys = x[idx], y[idx]
    model = copy.deepcopy(base)
    opt = method._optimizer(model)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)) if s["schedule"] == "cosine" else None
    order = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(epochs):
        p = torch.randperm(len(xs), generator=order)
        for start in range(0, len(xs), int(s["batch_size"])):
            b = p[start:start + int(s["batch_size"])]
            loss = F.cross_entropy(model(xs[b]), ys[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
    return model.eval()


def run(epochs: int = 10, seed: int = 0, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Protect the digits-cnn owner and evaluate every attack on the attacker's disjoint data."""
    ds = get_scenario("digits-cnn").load_data()
    x, y = ds.owner
    ax, ay = ds.x[ds.other_idx].reshape(-1, 1, 8, 8), ds.y[ds.other_idx]
    cut = len(ax) // 2  # attacker trains on one half, everything is tested on the other
    trx, tr_y, tx, ty = ax[:cut], ay[:cut], ax[cut:], ay[cut:]
    base = train_owner("digits-cnn", seed=seed)
    dep, key = fpr.protect(base, method="passport", data=x, labels=y, seed=seed, epochs=epochs, progress=False,
                           **(settings or {}))
    same = control(base, x.reshape(len(x), 1, 8, 8), y, seed, epochs, settings or {})
    rows: dict[str, Any] = {"unprotected (same model, no watermark)": {"deployment_accuracy": _accuracy(base, tx, ty)},
                            "unprotected, same training as protect": {"deployment_accuracy": _accuracy(same, tx, ty)}}
    attacks: dict[str, Callable[[], nn.Module]] = {
        "none": lambda: dep,
        "fine-tune 10 ep": lambda: fit(copy.deepcopy(dep), "classification", trx, tr_y, epochs=10, seed=1),
        "channel permutation": lambda: permute_channels(dep),
        "BN folded into conv": lambda: fold_bn(dep),
        "independent model": lambda: train_owner("digits-cnn", seed=seed + 100),
    }
    attacks.update({f"prune {int(f * 100)}%": (lambda f=f: prune(dep, f)) for f in [i / 10 for i in range(10)]})
    for name, make in attacks.items():
        rows[name] = evaluate(key, make(), tx, ty)
    amb = {m: ambiguity(dep, key, trx, tr_y, m, seed=seed) for m in ("random", "flip", "claim")}
    return {"date": dt.date.today().isoformat(), "epochs": epochs, "seed": seed, "n_bits": key.info["n_bits"],
            "key_info": {k: key.info[k] for k in ("private_accuracy", "deployment_accuracy")},
            "attacks": rows, "ambiguity": amb}


def to_markdown(res: dict[str, Any]) -> str:
    f = lambda v: "-" if v is None else (f"{v:.2e}" if isinstance(v, float) and v < 1e-3 else  # noqa: E731
                                         f"{v:.3f}" if isinstance(v, float) else str(v))
    cols = ["deployment_accuracy", "sign_detection", "p_value", "private_accuracy", "trigger_accuracy", "is_match"]
    lines = ["| attack | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {k} | " + " | ".join(f(r.get(c)) for c in cols) + " |" for k, r in res["attacks"].items()]
    lines += ["", "| ambiguity attack | forged private acc | sign vs owner bits | sign vs attack target "
              "| passport cosine | forger's key | forger match |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | " + " | ".join(f(v) for v in r.values()) + " |" for k, r in res["ambiguity"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="passport_robustness")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a passport setting for protect, e.g. --set margin=0.05 (values parsed as JSON)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = _settings(tuple(args.settings))  # the CLI's --set parser: JSON values, else strings
    res = run(args.epochs, args.seed, settings)
    res["settings"] = settings
    Path(f"{args.out}.json").write_text(json.dumps(res, indent=2))
    Path(f"{args.out}.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
