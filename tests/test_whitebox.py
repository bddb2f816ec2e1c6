"""White-box evidence on the tiny text BERT: CKA and weight Grams separate derivatives from independents, survive a
neuron permutation, and turn into p-values calibrated on independents that the tested suspects are not part of."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from fp_registry import whitebox as W
from fp_registry.text import TinyBert, synthetic_text
from fp_registry.training import fit

STEPS = 150  # a couple of seconds per model on an idle machine


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor, **cfg: Any) -> TinyBert:
    torch.manual_seed(seed)
    return fit(TinyBert(**cfg), "classification", x, y, steps=STEPS, lr=2e-3, batch_size=64, seed=seed)


def _permuted(model: TinyBert, seed: int) -> TinyBert:
    """The same function with every FFN's hidden neurons shuffled (rows of the first Linear, columns of the second)."""
    out, gen = copy.deepcopy(model), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in out.bert.bert.encoder.layer:
            first, second = layer.intermediate.dense, layer.output.dense
            p = torch.randperm(first.out_features, generator=gen)
            first.weight.copy_(first.weight[p])
            first.bias.copy_(first.bias[p])
            second.weight.copy_(second.weight[:, p])
    return out


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    torch.set_num_threads(1)
    x, y, _ = synthetic_text(1200)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    owner = _trained(0, xt[:900], yt[:900])
    tuned = fit(copy.deepcopy(owner), "classification", xt[900:], yt[900:], steps=40, lr=1e-3, seed=5)
    return {"owner": owner, "tuned": tuned, "permuted": _permuted(owner, 3), "probe": xt[900:1100],
            "null": [_trained(s, xt[:900], yt[:900]) for s in (1, 2)],  # calibration independents
            "indep": _trained(7, xt[:900], yt[:900]),                   # a held-out independent
            "small": _trained(8, xt[:900], yt[:900], hidden=16, layers=1, intermediate=32)}


def test_permutation_leaves_function_and_evidence(models: dict[str, Any]) -> None:
    owner, perm, x = models["owner"], models["permuted"], models["probe"]
    with torch.no_grad():
        assert torch.allclose(owner(x), perm(x), atol=1e-4)  # a true function-preserving permutation
    ev = W.evidence(owner, perm, x)
    assert ev["cka"]["score"] > 0.999
    assert ev["weights"]["score"] > 0.999  # the Gram views are blind to the shuffle
    plain = dict(W.weight_matrices(owner))["bert.bert.encoder.layer.0.intermediate.dense"]
    shuffled = dict(W.weight_matrices(perm))["bert.bert.encoder.layer.0.intermediate.dense"]
    assert not torch.allclose(plain, shuffled)  # ...while the raw weights did change (so naive cosine would drop)


def test_derivative_beats_independents_with_pvalues(models: dict[str, Any]) -> None:
    owner, x = models["owner"], models["probe"]
    nulls = W.fit_nulls(owner, models["null"], x)
    tuned = W.evidence(owner, models["tuned"], x, nulls)
    for other in ("indep", "small"):
        ev = W.evidence(owner, models[other], x, nulls)
        for key in ("cka", "weights"):
            assert tuned[key]["score"] > ev[key]["score"] + 0.2, (key, other)
    for key in ("cka", "weights"):
        assert tuned[key]["p_empirical"] == pytest.approx(1 / 3)  # the floor with two independents
        assert tuned[key]["p_normal"] < 1e-3
    held_out = W.evidence(owner, models["indep"], x, nulls)
    assert held_out["weights"]["p_normal"] > 1e-3  # an unseen independent is not flagged by the weight null


def test_independents_of_another_shape_stay_out_of_the_weight_null() -> None:
    """An independent with no same-shape weights has no weight statistic: it must not widen the null (its
    placeholder 0.0 once put an 80 %-pruned digits MLP only 3.6 spreads out), nor get a p-value as a suspect."""
    torch.manual_seed(0)

    def mlp(hidden: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 4))

    owner, same, other, x = mlp(16), [mlp(16) for _ in range(5)], mlp(12), torch.randn(32, 8)
    assert "reason" in W.weight_evidence(owner, other)  # no same-shape matrix: the statistic is undefined
    nulls, clean = W.fit_nulls(owner, same + [other], x), W.fit_nulls(owner, same, x)
    assert nulls["weights"].scores == clean["weights"].scores and len(nulls["weights"].scores) == 5
    assert len(nulls["cka"].scores) == 6  # hidden states compare across widths: CKA keeps the other independent
    ev = W.evidence(owner, other, x, nulls)
    assert "p_normal" not in ev["weights"] and "p_normal" in ev["cka"]
    copy_ = W.evidence(owner, copy.deepcopy(owner), x, nulls)
    assert copy_["weights"]["p_normal"] < 1e-6  # a copy stays far out in the clean null


def test_null_pvalues() -> None:
    null = W.Null([0.1, 0.2, 0.3, 0.4])
    assert null.empirical(0.35) == pytest.approx(2 / 5)
    assert null.empirical(0.9) == pytest.approx(1 / 5)
    assert null.normal(0.25) == pytest.approx(0.5, abs=0.02)
    assert null.normal(0.9) < null.normal(0.5) < null.normal(0.3)
    assert W.Null([]).empirical(0.5) is None and W.Null([0.1]).normal(0.5) is None


def test_linear_cka_properties() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 8, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    assert W.linear_cka(a, 3.0 * a @ q + 1.0) == pytest.approx(1.0)  # rotation, scale and shift invariant
    assert W.linear_cka(a, torch.randn(300, 8, generator=gen, dtype=torch.float64)) < 0.2


def test_whitebox_command(tmp_path: Any, models: dict[str, Any], capsys: Any) -> None:
    """`fpreg whitebox` on saved models: random-token probes, p-values from the given independents."""
    import json

    from fp_registry.cli import run
    from fp_registry.modelio import save_model

    paths = {k: str(save_model(models[k] if k != "null" else models["null"][0], tmp_path / k))
             for k in ("owner", "tuned", "indep", "null")}
    args = ["whitebox", paths["owner"], paths["tuned"], "-i", paths["indep"], "-i", paths["null"], "--n-probes", "32"]
    assert run(args) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["cka"]["score"] > 0.8 and ev["weights"]["score"] > 0.8
    assert ev["weights"]["p_empirical"] == pytest.approx(1 / 3)


def _exported(model: TinyBert, x: torch.Tensor, path: Any) -> Any:
    """The model as MLflow stores it: a torch.export program with a dynamic batch, saved and loaded back."""
    from fp_registry.modelio import load_pt2

    program = torch.export.export(model.eval(), (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return load_pt2(path)


def test_exported_programs_measure_the_same_statistics(models: dict[str, Any], tmp_path: Any) -> None:
    """Nulls are fitted on in-memory models, registry suspects are exported programs: both must give one statistic."""
    owner, x = models["owner"], models["probe"]
    probes = W.probe_inputs(owner, 16, 12, seed=0)
    exported = {k: _exported(models[k], probes, tmp_path / f"{k}.pt2") for k in ("owner", "tuned")}
    assert W.probe_inputs(exported["owner"], 16, 12, seed=0).equal(probes)  # vocabulary found in the graph
    mixed = W.evidence(owner, exported["tuned"], x)
    both = W.evidence(exported["owner"], exported["tuned"], x)
    for key in ("cka", "weights"):
        assert both[key]["score"] == pytest.approx(mixed[key]["score"], abs=1e-6), key
    assert both["weights"]["matched"] == len(W.weight_matrices(owner))  # embeddings excluded on both sides
    assert W.evidence(exported["owner"], owner, x)["cka"]["score"] > 0.999


def test_checks_report_whitebox_evidence_beside_the_verdict(models: dict[str, Any], tmp_path: Any) -> None:
    from fp_registry.backends import get_backend
    from fp_registry.fingerprints import fingerprint
    from fp_registry.modelio import save_model
    from fp_registry.pipeline import check_suspect

    owner = models["owner"]
    fp = fingerprint(owner, method="textprobe", data=models["probe"], negatives=models["null"], whitebox=True,
                     progress=False, n_points=16, steps=5)
    assert [len(s) for s in fp.meta["whitebox"]["nulls"].values()] == [2, 2]  # scores of the 2 independents only
    backend = get_backend(f"file://{tmp_path / 'registry'}")
    backend.put(fp, str(save_model(owner, tmp_path / "owner")))  # the check loads the owner from this URI
    [tuned] = check_suspect(models["tuned"], backend, record=False)
    [indep] = check_suspect(models["indep"], backend, record=False)
    for key in ("cka", "weights"):
        assert tuned.evidence["whitebox"][key]["score"] > indep.evidence["whitebox"][key]["score"] + 0.2, key
    assert tuned.evidence["whitebox"]["weights"]["p_normal"] < 1e-3
    fused, fused_indep = tuned.evidence["whitebox"]["fused"], indep.evidence["whitebox"]["fused"]
    assert len(fp.meta["whitebox"]["fused"]["negative_scores"]) == 2  # calibrated on the same 2 independents
    assert fused["match"] and fused["score"] > fused_indep["score"] + 10  # the weights: far beyond the null
    [off] = check_suspect(models["tuned"], backend, record=False, config={"whitebox": False})
    assert "whitebox" not in off.evidence and off.score == tuned.score  # evidence beside, never instead of, the verdict
    from fp_registry.render import VERDICT_COLUMNS, table, verdict_columns, verdict_rows

    assert verdict_columns([off]) == VERDICT_COLUMNS  # `fpreg check` shows a fused column only when there is one
    lines = table(verdict_rows([tuned, off]), verdict_columns([tuned, off])).splitlines()
    assert lines[0].endswith("fused") and "match (" in lines[2] and "match (" not in lines[3]
