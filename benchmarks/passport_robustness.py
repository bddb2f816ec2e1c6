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
from fp_registry.algorithms.passport import _accuracy, binomial_sf
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


def ambiguity(deployed: nn.Module, key: Any, x: torch.Tensor, y: torch.Tensor, mode: str, epochs: int = 5,
              seed: int = 0) -> dict[str, float]:
    """Attack I ('random'): fresh passports + MLP optimised on data. Attack II ('flip'): owner passports + noise,
    fresh MLP, optimised towards the signature with 10 % of its bits flipped. Weights stay frozen."""
    gen = torch.Generator().manual_seed(seed)
    groups = [key.tensors[f"layer{i}"] for i in range(int(key.info["n_layers"]))]
    if mode == "random":
        pps = [(torch.rand(g["p_gamma"].shape, generator=gen) * 2 - 1,
                torch.rand(g["p_beta"].shape, generator=gen) * 2 - 1) for g in groups]
        targets = None
    else:
        pps = [(g["p_gamma"] + 1e-3 * torch.randn(g["p_gamma"].shape, generator=gen),
                g["p_beta"] + 1e-3 * torch.randn(g["p_beta"].shape, generator=gen)) for g in groups]
        targets = []
        for g in groups:
            b = g["bits"].clone()
            idx = torch.randperm(len(b), generator=gen)[: max(1, len(b) // 10)]
            b[idx] = -b[idx]
            targets.append(b)
    pps = [(a.clone().requires_grad_(True), b.clone().requires_grad_(True)) for a, b in pps]
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
            if targets is not None:
                loss = loss + sum(F.relu(0.1 - t * d.scales()[0]).sum() for d, t in zip(duals, targets))
            opt.zero_grad()
            loss.backward()
            opt.step()
    hx, hy = key.tensors["heldout"]["x"], key.tensors["heldout"]["y"]
    acc = _accuracy(work, hx, hy)
    with torch.no_grad():
        hits = torch.cat([(torch.sign(d.scales()[0]) == g["bits"]).float() for d, g in zip(duals, groups)])
        cos = torch.stack([F.cosine_similarity(d.p_gamma.flatten(), g["p_gamma"].flatten(), dim=0)
                           for d, g in zip(duals, groups)]).mean()
        tgt = targets or [g["bits"] for g in groups]
        hit_t = torch.cat([(torch.sign(d.scales()[0]) == t).float() for d, t in zip(duals, tgt)])
    return {"forged_private_accuracy": acc, "forged_sign_vs_owner_bits": float(hits.mean()),
            "forged_sign_vs_attack_target": float(hit_t.mean()), "passport_cosine_to_owner": float(cos)}


def evaluate(key: Any, model: nn.Module, tx: torch.Tensor, ty: torch.Tensor) -> dict[str, Any]:
    v = key.verify(model)
    e = v.evidence
    return {"deployment_accuracy": _accuracy(model, tx, ty), "sign_detection": e.get("sign_detection"),
            "p_value": v.p_value, "private_accuracy": e.get("private_accuracy"),
            "trigger_accuracy": e.get("trigger_accuracy"), "is_match": v.is_match,
            "layers_realigned": e.get("layers_realigned")}


def run(epochs: int = 10, seed: int = 0) -> dict[str, Any]:
    """Protect the digits-cnn owner and evaluate every attack on the attacker's disjoint data."""
    ds = get_scenario("digits-cnn").load_data()
    x, y = ds.owner
    ax, ay = ds.x[ds.other_idx].reshape(-1, 1, 8, 8), ds.y[ds.other_idx]
    cut = len(ax) // 2  # attacker trains on one half, everything is tested on the other
    trx, tr_y, tx, ty = ax[:cut], ay[:cut], ax[cut:], ay[cut:]
    base = train_owner("digits-cnn", seed=seed)
    dep, key = fpr.protect(base, method="passport", data=x, labels=y, seed=seed, epochs=epochs, progress=False)
    rows: dict[str, Any] = {"unprotected (same model, no watermark)": {"deployment_accuracy": _accuracy(base, tx, ty)}}
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
    amb = {m: ambiguity(dep, key, trx, tr_y, m, seed=seed) for m in ("random", "flip")}
    return {"date": dt.date.today().isoformat(), "epochs": epochs, "seed": seed, "n_bits": key.info["n_bits"],
            "key_info": {k: key.info[k] for k in ("private_accuracy", "deployment_accuracy")},
            "attacks": rows, "ambiguity": amb}


def to_markdown(res: dict[str, Any]) -> str:
    f = lambda v: "-" if v is None else (f"{v:.2e}" if isinstance(v, float) and v < 1e-3 else  # noqa: E731
                                         f"{v:.3f}" if isinstance(v, float) else str(v))
    cols = ["deployment_accuracy", "sign_detection", "p_value", "private_accuracy", "trigger_accuracy", "is_match"]
    lines = ["| attack | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {k} | " + " | ".join(f(r.get(c)) for c in cols) + " |" for k, r in res["attacks"].items()]
    lines += ["", "| ambiguity attack | forged private acc | sign vs owner bits | sign vs attack target | passport cosine |",
              "|---|---|---|---|---|"]
    lines += [f"| {k} | " + " | ".join(f(v) for v in r.values()) + " |" for k, r in res["ambiguity"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="passport_robustness")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = run(args.epochs, args.seed)
    Path(f"{args.out}.json").write_text(json.dumps(res, indent=2))
    Path(f"{args.out}.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
