"""DeepCore: both similarity variants, point selection, batch clustering, refusal of non-classifiers, round trip."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import fp_registry as fpr
from fp_registry.algorithms.clustering import cluster_suspects
from fp_registry.algorithms.deepcore import DEFAULT_POINTS, DeepCore
from fp_registry.errors import NotApplicableError, UsageError
from fp_registry.suspect import Suspect
from fp_registry.zoo.spec import Zoo, ZooModel


@pytest.fixture(scope="module")
def models(digits_owner: Any, digits_independent: list, digits_finetuned: Any) -> dict[str, torch.nn.Module]:
    """Owner, derived copies and four same-architecture models trained independently on the same data."""
    homs = {f"hom{i}": m for i, m in enumerate(digits_independent, start=1)}
    return {"owner": digits_owner, "copy": copy.deepcopy(digits_owner), "tuned": digits_finetuned, **homs}


def small_zoo(models: dict, train: tuple[str, ...], calibration: tuple[str, ...]) -> Zoo:
    """Train split: references for point selection; calibration split: the threshold (copy is its positive)."""
    members = [ZooModel(n, models[n], False, "homologous", "train") for n in train]
    members += [ZooModel(n, models[n], n == "copy", "homologous", "calibration") for n in calibration]
    return Zoo(members)


@pytest.mark.parametrize("similarity", ["soft", "label", "kappa"])
def test_similarity_flags_copies_not_homologous(models: dict, digits: dict, similarity: str) -> None:
    zoo = small_zoo(models, ("hom1",), ("hom2", "copy"))
    fp = fpr.fingerprint(models["owner"], method="deepcore", similarity=similarity, zoo=zoo, progress=False,
                         **digits)
    assert fp.info["selected_by"] == "1 independent models of the zoo's train split"
    assert len(fp.tensors["core"]["x"]) == DEFAULT_POINTS == 100
    assert fp.verify(models["copy"]).is_match
    assert fp.verify(models["tuned"]).is_match
    for name in ("hom3", "hom4"):  # seen by neither selection nor calibration
        v = fp.verify(models[name])
        assert not v.is_match, (name, v.score, v.threshold)


def test_float_default_selects_with_the_train_split_copies(models: dict, digits: dict) -> None:
    """``select="auto"`` is stored as contrast for float owners: the train split's copies join the selection."""
    members = [ZooModel("hom1", models["hom1"], False, "homologous", "train"),
               ZooModel("tuned", models["tuned"], True, "finetune", "train")]
    members += [ZooModel(n, models[n], n == "copy", "homologous", "calibration") for n in ("hom2", "copy")]
    fp = fpr.fingerprint(models["owner"], method="deepcore", zoo=Zoo(members), n_points=40, n_candidates=200,
                         progress=False, **digits)
    assert fp.settings["select"] == "contrast"
    assert fp.info["selected_by"] == "1 independent models of the zoo's train split + 1 derived models"
    assert fp.verify(models["copy"]).is_match
    assert not any(fp.verify(models[n]).is_match for n in ("hom3", "hom4"))


def test_selection_keeps_points_references_disagree_on(models: dict, digits: dict) -> None:
    """Selected points separate copies from unseen homologous models more than unselected candidates do."""
    # 40 of 600 candidates: the default recipe keeps 1 in 30, and with only 1 in 5 kept at eps 0.05 the unselected
    # first 40 candidates already score as low as selected ones on one of two unseen models (measured: 0.20 / 0.20)
    kw = dict(method="deepcore", n_points=40, n_candidates=600, progress=False, **digits)
    picked = fpr.fingerprint(models["owner"], zoo=small_zoo(models, ("hom1", "hom2"), ()), **kw)
    plain = fpr.fingerprint(models["owner"], references=0, negatives=[], **kw)
    assert plain.info["selected_by"].startswith("none")
    assert picked.info["reference_similarity"] < picked.info["reference_similarity_all"]
    unseen = [picked.verify(models[n]).score for n in ("hom3", "hom4")]
    baseline = [plain.verify(models[n]).score for n in ("hom3", "hom4")]
    assert max(unseen) < min(baseline), (unseen, baseline)  # homologous models agree less on selected points
    assert picked.verify(models["tuned"]).score > max(unseen)


def test_trained_references_when_no_zoo(models: dict, digits: dict) -> None:
    """Given only calibration negatives, DeepCore trains its own homologous references on the owner's data."""
    fp = fpr.fingerprint(models["owner"], method="deepcore", n_points=30, n_candidates=150, references=1,
                         reference_epochs=4, negatives=[models["hom1"], models["hom2"]], positives=[models["copy"]],
                         progress=False, **digits)
    assert "trained here" in fp.info["selected_by"]
    assert fp.verify(models["tuned"]).is_match
    assert not any(fp.verify(models[n]).is_match for n in ("hom3", "hom4"))


def test_clustering_separates_derived_from_homologous(models: dict, digits: dict) -> None:
    fp = fpr.fingerprint(models["owner"], method="deepcore", n_points=40, n_candidates=200, progress=False,
                         zoo=small_zoo(models, ("hom1",), ()), **digits)
    batch = [Suspect(models[n], n) for n in ("hom3", "copy", "hom4", "tuned")]
    refs = [Suspect(models[n], n) for n in ("hom1", "hom2")]
    result = cluster_suspects(fp, batch, refs)
    assert result.in_owner_cluster == {"hom3": False, "copy": True, "hom4": False, "tuned": True}
    assert result.references_in_owner_cluster == 0
    single = cluster_suspects(fp, [Suspect(models["tuned"], "tuned")])
    assert "degenerate" in single.note and single.in_owner_cluster == {"tuned": False}


def test_regression_owner_refused() -> None:
    from fp_registry.scenarios import get_scenario, owner_inputs

    regressor = get_scenario("diabetes-fcn").build(0)  # refusal happens before any training would matter
    with pytest.raises(NotApplicableError, match="decision boundary"):
        fpr.fingerprint(regressor, method="deepcore", negatives=[], progress=False, **owner_inputs("diabetes-fcn"))


def test_bad_settings_refused() -> None:
    with pytest.raises(UsageError, match="n_candidates >= n_points"):
        DeepCore(n_points=50, n_candidates=10)
    with pytest.raises(UsageError, match="similarity"):
        DeepCore(similarity="jsd")
    with pytest.raises(UsageError, match="optimise"):
        DeepCore(optimise="adam")
    assert DeepCore(target="auto").settings["target"] == "other"  # fingerprints saved before one recipe
    # 100 of 3000 float candidates (100 of 400 token candidates); None, stored by a short-lived default, reads as 100
    assert (DeepCore().points(), DeepCore(n_points=None).points(), DeepCore(n_points=30).points()) == (100, 100, 30)
    assert DeepCore().settings["n_candidates"] == 3000
    with pytest.raises(UsageError, match="token_candidates >= n_points"):
        DeepCore(token_candidates=50)


def test_save_load_round_trip(models: dict, digits: dict, tmp_path: Any) -> None:
    fp = fpr.fingerprint(models["owner"], method="deepcore", similarity="soft", n_points=20, n_candidates=60,
                         zoo=small_zoo(models, ("hom2",), ("hom1",)), progress=False, **digits)
    fp.save(tmp_path / "fp")
    back = fpr.load_fingerprint(tmp_path / "fp")
    assert back.settings["eps"] == DeepCore.defaults["eps"] == 0.3 and back.settings["n_candidates"] == 60
    for name in ("tuned", "hom3"):
        a, b = fp.verify(models[name]), back.verify(models[name])
        assert (a.score, a.threshold, a.is_match) == (b.score, b.threshold, b.is_match)


def test_audit_command_clusters_a_batch(models: dict, digits: dict, tmp_path: Any) -> None:
    """`fpreg audit --cluster` over saved models: per-suspect verdicts plus the batch's owner cluster."""
    import json

    from click.testing import CliRunner

    from fp_registry.cli import _load_plugin_commands, cli
    from fp_registry.modelio import save_model

    _load_plugin_commands()
    fp = fpr.fingerprint(models["owner"], method="deepcore", n_points=40, n_candidates=200, progress=False,
                         zoo=small_zoo(models, ("hom1",), ("hom2", "copy")), **digits)
    fp.save(tmp_path / "fp")
    paths = {n: str(save_model(models[n], tmp_path / n)) for n in ("tuned", "hom3", "hom4", "hom2")}
    args = ["audit", str(tmp_path / "fp"), paths["tuned"], paths["hom3"], paths["hom4"], "--cluster",
            "--reference", paths["hom2"], "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output  # a match was found
    out = json.loads(result.output)
    assert [v["is_match"] for v in out["verdicts"]] == [True, False, False]
    assert out["cluster"]["in_owner_cluster"] == {paths["tuned"]: True, paths["hom3"]: False, paths["hom4"]: False}


@pytest.fixture(scope="module")
def bert() -> dict[str, Any]:
    """Tiny token-id BERTs: owner, a fine-tuned copy and three independently trained look-alikes."""
    from fp_registry.text import TinyBert, synthetic_text
    from fp_registry.training import fit

    torch.set_num_threads(1)
    x, y, _ = synthetic_text(1200)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def trained(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return fit(TinyBert(), "classification", x[:900], y[:900], steps=200, lr=2e-3, batch_size=64, seed=seed)

    owner = trained(0)
    tuned = fit(copy.deepcopy(owner), "classification", x[900:], y[900:], steps=30, lr=1e-3, seed=5)
    return {"x": x[:900], "y": y[:900], "owner": owner, "copy": copy.deepcopy(owner), "tuned": tuned,
            **{f"hom{i}": trained(i) for i in (1, 2, 3)}}


def test_token_deepcore_selects_int64_points(bert: dict[str, Any], tmp_path: Any) -> None:
    """Token owners: ids stay int64, selection uses the train split, a copy matches, an unseen BERT scores low."""
    zoo = small_zoo(bert, ("hom1",), ("hom2", "copy"))
    fp = fpr.fingerprint(bert["owner"], method="deepcore", data=bert["x"], labels=bert["y"], zoo=zoo, n_points=30,
                         token_candidates=120, steps=12, progress=False)
    core = fp.tensors["core"]["x"]
    assert core.dtype == torch.int64 and fp.spec["input_kind"] == "int64" and len(core) == 30
    assert fp.settings["select"] == "least"  # contrast is the default for float owners only
    assert fp.info["selected_by"] == "1 independent models of the zoo's train split"
    assert fp.info["reference_similarity"] < fp.info["reference_similarity_all"]
    tuned, unseen = fp.verify(bert["tuned"]), fp.verify(bert["hom3"])
    assert tuned.is_match and tuned.score > unseen.score + 0.2, (tuned.score, unseen.score)
    back = fpr.load_fingerprint(fp.save(tmp_path / "fp"))
    assert torch.equal(back.tensors["core"]["x"], core) and back.verify(bert["tuned"]).score == tuned.score
    batch = [Suspect(bert[n], n) for n in ("hom3", "tuned", "copy")]
    clusters = cluster_suspects(fp, batch, [Suspect(bert["hom1"], "hom1"), Suspect(bert["hom2"], "hom2")])
    assert clusters.in_owner_cluster == {"hom3": False, "tuned": True, "copy": True}


def test_token_deepcore_rejects_smaller_vocabulary(bert: dict[str, Any]) -> None:
    from fp_registry.errors import ShapeMismatchError
    from fp_registry.text import TinyBert

    fp = fpr.fingerprint(bert["owner"], method="deepcore", data=bert["x"], labels=bert["y"],
                         zoo=small_zoo(bert, ("hom1",), ("hom2",)), n_points=10, token_candidates=20, steps=3,
                         progress=False)
    with pytest.raises(ShapeMismatchError, match="vocabulary"):
        fp.verify(TinyBert(vocab_size=64))


def test_candidate_ranking_prefers_points_copies_keep_and_homologous_lose() -> None:
    from fp_registry.algorithms.deepcore import candidate_ranking

    eye = torch.eye(3)
    own = eye[[0, 0, 0, 1]]  # four candidates; the owner says class 0, 0, 0, 1
    homologous = [eye[[0, 1, 1, 1]], eye[[0, 1, 0, 1]]]  # agree on 0 and 3, split on 2, disagree on 1
    copies = [eye[[0, 2, 0, 1]]]  # a copy agrees everywhere but candidate 1
    assert candidate_ranking(own, homologous, [])[:2].tolist() == [1, 2]
    assert candidate_ranking(own, homologous, copies)[:2].tolist() == [2, 0]  # 1 is lost by copies too
    assert candidate_ranking(own, homologous, [], worst=True)[0].item() == 1  # the only point no one agrees on


def test_token_deepcore_soft_similarity(bert: dict[str, Any]) -> None:
    fp = fpr.fingerprint(bert["owner"], method="deepcore", similarity="soft", data=bert["x"], labels=bert["y"],
                         zoo=small_zoo(bert, ("hom1",), ("hom2", "copy")), n_points=30, token_candidates=120,
                         steps=12, progress=False)
    assert fp.verify(bert["copy"]).score == pytest.approx(1.0, abs=1e-5)
    tuned, unseen = fp.verify(bert["tuned"]), fp.verify(bert["hom3"])
    assert tuned.score > unseen.score, (tuned.score, unseen.score)


def test_core_points_never_carry_a_single_owner_label() -> None:
    from fp_registry.algorithms.deepcore import chance_corrected, with_two_labels

    labels = torch.tensor([7] * 30 + [1, 2, 7, 3] * 5)
    ranking = torch.arange(50)  # the 30 best candidates are all class 7
    keep = with_two_labels(ranking, labels, 20)
    assert len(keep) == 20 and keep[:18].tolist() == list(range(18)) and keep[18:].tolist() == [30, 31]
    own = labels[keep]
    assert chance_corrected(1.0, own.clone(), own, 10) == pytest.approx(1.0)  # an exact copy scores 1 again
    assert with_two_labels(torch.arange(50).flip(0), labels, 20).tolist() == list(range(49, 29, -1))  # mixed: as is
    with pytest.raises(NotApplicableError, match="one label"):
        with_two_labels(ranking, torch.full((50,), 4), 20)


def test_kappa_removes_agreement_a_class_prior_explains() -> None:
    from fp_registry.algorithms.deepcore import chance_corrected

    own = torch.tensor([0, 1, 2, 3] * 25)
    constant = torch.full((100,), 2)  # answers class 2 everywhere: agrees on the owner's 25 class-2 points
    assert chance_corrected(0.25, constant, own, 4) == pytest.approx(0.0)
    assert chance_corrected(1.0, own.clone(), own, 4) == pytest.approx(1.0)


def test_ensemble_points_follow_copies_and_leave_homologous_models(models: dict, digits: dict) -> None:
    """Optimised through the owner, a derived copy and two homologous models, the points keep the copy on the
    target and push the homologous models off it, more than owner-only optimisation from the same seeds does."""
    from fp_registry.algorithms.deepcore_ensemble import optimise_ensemble
    from fp_registry.algorithms.textprobe import other_class
    from fp_registry.methods import make_owner

    owner = make_owner(models["owner"], **digits)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(300, *owner.input_shape, generator=gen) * owner.domain[1]
    with torch.no_grad():
        t = other_class(models["owner"](x0).argmax(1), 10, gen)
    kw = dict(steps=30, lr=0.01, eps=0.3, sample=8, seed=0, clamp=owner.clamp)
    homs = [models["hom1"], models["hom2"]]
    ens = optimise_ensemble(models["owner"], x0, t, [models["tuned"]], homs, penalty=3.0, **kw)
    alone = optimise_ensemble(models["owner"], x0, t, [], [], penalty=0.0, **kw)

    def on_target(model: torch.nn.Module, x: torch.Tensor) -> float:
        with torch.no_grad():
            return float((model(x).argmax(1) == t).float().mean())

    assert on_target(models["owner"], ens) >= 0.8  # measured 0.90: the penalty keeps some points off target
    gap = {name: on_target(models["tuned"], x) - max(on_target(m, x) for m in homs)
           for name, x in (("ens", ens), ("alone", alone))}
    assert gap["ens"] > gap["alone"] + 0.2, gap  # the copy stays, the homologous models leave
    assert float((ens - x0).abs().max()) <= 0.3 + 1e-6
    chunked = optimise_ensemble(models["owner"], x0, t, [models["tuned"]], homs, penalty=3.0, chunk=70, **kw)
    assert torch.equal(chunked, ens)  # chunks replay the same model draws: memory changes, the points do not


def test_ensemble_without_zoo_uses_pruned_owner_copies(models: dict, digits: dict) -> None:
    fp = fpr.fingerprint(models["owner"], method="deepcore", optimise="ensemble", eps=0.3, n_points=30,
                         n_candidates=150, references=1, reference_epochs=4, negatives=[models["hom1"], models["hom2"]],
                         positives=[models["copy"]], progress=False, **digits)
    assert fp.info["optimised_by"] == "owner + 3 pruned copies of the owner + 1 homologous models"
    assert fp.verify(models["tuned"]).is_match
    assert not any(fp.verify(models[n]).is_match for n in ("hom3", "hom4"))


def test_selection_with_look_alikes_the_points_never_saw(models: dict, digits: dict) -> None:
    """``select_with="trained"``: candidates are picked by look-alikes trained here, not the optimised-against ones."""
    from fp_registry.methods import make_owner

    fp = fpr.fingerprint(models["owner"], method="deepcore", select_with="trained", references=2, reference_epochs=4,
                         n_points=30, n_candidates=150, zoo=small_zoo(models, ("hom1",), ("hom2", "copy")),
                         progress=False, **digits)
    assert fp.info["selected_by"] == "2 look-alikes trained here (not optimised against)"
    assert fp.verify(models["tuned"]).is_match
    assert not any(fp.verify(models[n]).is_match for n in ("hom3", "hom4"))
    owner = make_owner(models["owner"], "classification", digits["data"], digits["labels"])
    method = DeepCore(references=1, reference_epochs=1)
    optimised_against, picked_by = method.references(owner, None, 0)[0][0], method.selection_references(owner, 0)[0][0]
    assert not torch.equal(next(optimised_against.parameters()), next(picked_by.parameters()))  # other seeds


def test_feature_domain_keeps_constant_pixels_constant(models: dict, digits: dict) -> None:
    """``domain="feature"``: seeds and optimised points stay inside each input feature's range in the owner data."""
    x = torch.as_tensor(digits["data"], dtype=torch.float32)
    lo, hi = x.min(0).values, x.max(0).values
    assert bool((lo == hi).any())  # digits have pixels that are constant over the whole data set
    for optimise in ("ensemble", "owner"):
        fp = fpr.fingerprint(models["owner"], method="deepcore", domain="feature", optimise=optimise, n_points=20,
                             n_candidates=60, references=1, reference_epochs=2, negatives=[models["hom1"]],
                             positives=[models["copy"]], progress=False, **digits)
        core = fp.tensors["core"]["x"].reshape(len(fp.tensors["core"]["x"]), -1)
        assert bool((core >= lo - 1e-6).all() and (core <= hi + 1e-6).all()), optimise
        assert bool((core[:, lo == hi] == lo[lo == hi]).all())


def test_pruned_selection_keeps_points_tolerated_prunings_answer(models: dict, digits: dict) -> None:
    """``select="pruned"``: the owner's prunings that keep 90 % of its labels join selection as copies."""
    from fp_registry.algorithms.deepcore_ensemble import tolerated_prunings
    from fp_registry.methods import make_owner

    owner = make_owner(models["owner"], "classification", digits["data"], digits["labels"])
    x = torch.as_tensor(digits["data"], dtype=torch.float32)
    with torch.no_grad():
        own = models["owner"](x).argmax(1)
        kept = tolerated_prunings(owner)
        assert kept and all(float((m(x).argmax(1) == own).float().mean()) >= 0.9 for m in kept)
    assert tolerated_prunings(owner, fidelity=1.01) == []
    fp = fpr.fingerprint(models["owner"], method="deepcore", select="pruned", n_points=30, n_candidates=150,
                         zoo=small_zoo(models, ("hom1",), ("hom2", "copy")), progress=False, **digits)
    assert fp.info["selected_by"].endswith(f"+ {len(kept)} tolerated prunings of the owner")
    assert fp.verify(models["tuned"]).is_match
    assert not any(fp.verify(models[n]).is_match for n in ("hom3", "hom4"))


def test_heavy_prunings_join_the_optimisation_and_keep_a_harder_pruning(models: dict, digits: dict) -> None:
    """``prunings="heavy"``: the owner's working heavy prunings pull on every step, so an 80 %-pruned copy (a ratio
    they leave out) keeps more of the owner's labels than on points made without them, from the same seeds.
    ``prunings="both"`` also pushes the heavy prunings of the train split's look-alike roots away."""
    from fp_registry.algorithms.deepcore_ensemble import HEAVY_FIDELITY, HEAVY_RATIOS, heavy_prunings, label_fidelity
    from fp_registry.methods import make_owner
    from fp_registry.zoo.attacks import prune

    owner = make_owner(models["owner"], "classification", digits["data"], digits["labels"])
    kept = heavy_prunings(owner)
    assert 0 < len(kept) <= len(HEAVY_RATIOS) and 0.8 not in HEAVY_RATIOS
    assert all(f >= HEAVY_FIDELITY for f in label_fidelity(owner, kept))
    assert len(heavy_prunings(make_owner(models["owner"], "classification"))) == len(HEAVY_RATIOS)  # no data
    members = [ZooModel("tuned", models["tuned"], True, "finetune", "train"),
               ZooModel("hom1", models["hom1"], False, "homologous", "train"),
               ZooModel("hom2", models["hom2"], False, "homologous", "calibration"),
               ZooModel("copy", models["copy"], True, "copy", "calibration")]
    kw = dict(method="deepcore", n_points=40, n_candidates=200, zoo=Zoo(members), progress=False, **digits)
    pruned = prune(models["owner"], None, ratio=0.8)
    gaps = []
    for seed in (0, 1, 2):  # one seed's 40 points move by single points; measured gaps 0.025, 0.10, 0.15
        heavy = fpr.fingerprint(models["owner"], prunings="heavy", seed=seed, **kw)
        plain = fpr.fingerprint(models["owner"], seed=seed, **kw)
        gaps.append(heavy.verify(pruned).evidence["label_agreement"] - plain.verify(pruned).evidence["label_agreement"])
        assert heavy.verify(models["tuned"]).is_match
        assert not any(heavy.verify(models[n]).is_match for n in ("hom3", "hom4"))
    assert sum(gaps) / len(gaps) > 0.03, gaps
    assert heavy.info["optimised_by"].endswith(f"+ {len(kept)} heavy prunings of the owner + 1 homologous models")
    assert "heavy" not in plain.info["optimised_by"]
    # "both": the train split's look-alike roots, heavily pruned (each against its own labels), join the other side
    look_alike = heavy_prunings(owner, models["hom1"])
    assert look_alike and all(f >= HEAVY_FIDELITY for f in label_fidelity(owner, look_alike, models["hom1"]))
    both = fpr.fingerprint(models["owner"], prunings="both", **kw)
    assert both.info["optimised_by"].endswith(f"heavy prunings of the owner + {1 + len(look_alike)} homologous models")
    assert not any(both.verify(models[n]).is_match for n in ("hom3", "hom4"))


def test_tail_lineages_calibrate_only_stratum_s(models: dict, digits: dict) -> None:
    from fp_registry.calibration import choose_threshold
    from fp_registry.fusion import stratum
    from fp_registry.whitebox import check

    members = small_zoo(models, ("hom1",), ("hom2", "hom3", "copy")).members
    zoo = Zoo(members + [ZooModel("hom4", models["hom4"], False, "homologous", "tail")])
    kw = dict(method="deepcore", n_points=40, n_candidates=200, zoo=zoo, progress=False, whitebox=True, **digits)
    plain = fpr.fingerprint(models["owner"], tail_lineages=0, **kw)
    tailed = fpr.fingerprint(models["owner"], tail_lineages=1, **kw)
    assert torch.equal(plain.tensors["core"]["x"], tailed.tensors["core"]["x"])  # the tail never shapes the points
    assert plain.calibration.threshold == tailed.calibration.threshold  # nor tau_D
    a, b = plain.meta["whitebox"]["fused"], tailed.meta["whitebox"]["fused"]
    assert a["threshold"] == b["threshold"] and a["stratum_tail"] == 0
    ref = tailed.meta["whitebox"]
    assert stratum(check(ref, models["owner"], models["hom4"]), ref["nulls"]) == "S"  # a look-alike of stratum S
    kappa = tailed.verify(models["hom4"]).score
    assert b["stratum_tail"] == 1 and b["stratum_negative_scores"] == a["stratum_negative_scores"] + [kappa]
    assert b["stratum_threshold"] == choose_threshold(b["stratum_negative_scores"], b["stratum_positive_scores"])
    assert b["stratum_threshold"] > kappa  # the tail's look-alike no longer reaches stratum S's threshold
    for bad in (-1, "many"):
        with pytest.raises(UsageError, match="tail_lineages"):
            DeepCore(tail_lineages=bad)
