"""Zoo: disjoint splits, attacks that change weights as claimed while staying useful, caching, holdout."""
from __future__ import annotations

import torch
from torch import nn

from fp_registry import nets
from fp_registry.methods import make_owner
from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
from fp_registry.training import evaluate_utility
from fp_registry.zoo import attacks as A
from fp_registry.errors import UsageError
from fp_registry.zoo.builder import build_zoo, make_context, plan
from fp_registry.zoo.recipes import recipes
from fp_registry.zoo.spec import SPLITS

import pytest

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    kw = owner_inputs("digits-mlp")
    model = train_owner("digits-mlp", seed=0, use_cache=False)
    owner = make_owner(model, kw["task"], kw["data"], kw["labels"])
    ctx = make_context(owner, get_scenario("digits-mlp").load_data().other)
    ctx.seed = 11
    return owner, ctx


def acc(model: nn.Module, ctx: A.AttackContext) -> float:
    return evaluate_utility(model, ctx.task, ctx.alt_x, ctx.alt_y)["accuracy"]


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach() for m in A.weight_layers(model)]


def zero_fraction(model: nn.Module) -> float:
    ws = weights(model)
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def test_recipe_settings_are_disjoint_across_splits() -> None:
    for task in ("classification", "regression", "generation"):
        chains = {s: {tuple(st.label() for st in r.steps) for r in recipes(s, task)[0]} for s in SPLITS}
        assert not chains["train"] & chains["test"] and not chains["calibration"] & chains["test"]
        assert not chains["train"] & chains["calibration"]
        for s in SPLITS:  # the default zoo has >= 20 of each per split
            pos, neg = recipes(s, task)
            assert len(pos) >= 20 and len(neg) >= 20, (task, s, len(pos), len(neg))


def test_holdout_families_only_in_test() -> None:
    p = plan("classification", holdout_families=("distill", "extract"))
    fams = {(s, r.family) for s, r, _ in p}
    assert ("test", "distill") in fams and ("train", "distill") not in fams
    assert ("calibration", "extract") not in fams


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.8])
def test_prune_zeroes_the_claimed_fraction(setup, ratio: float) -> None:
    owner, ctx = setup
    pruned = A.prune(owner.model, ctx, ratio=ratio)
    assert abs(zero_fraction(pruned) - ratio) < 0.01
    assert zero_fraction(owner.model) < 0.01  # the owner is untouched
    print(f"prune({ratio}) accuracy {acc(pruned, ctx):.3f}")
    assert acc(pruned, ctx) > (0.8 if ratio <= 0.5 else 0.3)  # chance is 0.1


def test_quantisation_and_noise(setup) -> None:
    owner, ctx = setup
    base = acc(owner.model, ctx)
    q = A.quantize_int8(owner.model, ctx)
    for w0, w1 in zip(weights(owner.model), weights(q)):
        scale = w0.abs().reshape(len(w0), -1).amax(1) / 127
        assert not torch.equal(w0, w1)
        assert (w1.reshape(len(w1), -1) / scale[:, None]).sub(
            (w1.reshape(len(w1), -1) / scale[:, None]).round()).abs().max() < 1e-3  # on the int8 grid
    h = A.half_precision(owner.model, ctx)
    assert all(torch.equal(w, w.half().float()) for w in weights(h))
    n = A.weight_noise(owner.model, ctx, sigma=0.1)
    rel = [float((w1 - w0).std() / w0.std()) for w0, w1 in zip(weights(owner.model), weights(n))]
    assert all(0.07 < r < 0.13 for r in rel)
    for name, m in (("int8", q), ("fp16", h), ("noise", n)):
        print(f"{name} accuracy {acc(m, ctx):.3f} (owner {base:.3f})")
        assert acc(m, ctx) > base - 0.05


def test_finetune_last_changes_only_the_head(setup) -> None:
    owner, ctx = setup
    ft = A.finetune(owner.model, ctx, layers="last", lr=1e-3, epochs=2, data="alt")
    w0, w1 = weights(owner.model), weights(ft)
    assert all(torch.equal(a, b) for a, b in zip(w0[:-1], w1[:-1])) and not torch.equal(w0[-1], w1[-1])
    full = A.finetune(owner.model, ctx, layers="all", lr=1e-3, epochs=2)
    assert all(not torch.equal(a, b) for a, b in zip(w0, weights(full)))
    assert acc(ft, ctx) > 0.8 and acc(full, ctx) > 0.8


def test_fineprune_keeps_pruned_inputs_dropped(setup) -> None:
    owner, ctx = setup
    m = A.fine_prune(owner.model, ctx, ratio=0.5, epochs=1)
    head = weights(m)[-1]
    assert int((head.abs().sum(0) == 0).sum()) == head.shape[1] // 2
    assert acc(m, ctx) > 0.7


def _batchnorm_with_stats(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_permutation_preserves_function_of_cnns(setup, norm: str) -> None:
    _, ctx = setup
    torch.manual_seed(0)
    cnn = _batchnorm_with_stats(nets.SmallCNN(channels=[8, 16], norm=norm))
    p = A.permute(cnn, ctx)  # raises if outputs change
    assert not torch.equal(cnn.features[0].weight, p.features[0].weight)
    x = torch.rand(16, 64)
    assert torch.allclose(cnn(x), p(x), atol=1e-5)


def test_distillation_and_extraction_learn_from_outputs(setup) -> None:
    owner, ctx = setup
    small = A.distill(owner.model, ctx, arch="small", steps=150)
    stolen = A.extract_labels(owner.model, ctx, arch="same", steps=150)
    assert small.config["hidden"] != owner.model.config["hidden"]
    for name, m in (("distill(small)", small), ("extract(same)", stolen)):
        print(f"{name} accuracy {acc(m, ctx):.3f}")
        assert acc(m, ctx) > 0.6


def test_small_zoo_is_disjoint_useful_and_cached(setup, tmp_path, monkeypatch) -> None:
    owner, _ = setup
    monkeypatch.setenv("FP_REGISTRY_CACHE", str(tmp_path))
    sizes = {"train": (1, 1), "calibration": (1, 1), "test": (2, 2)}
    zoo = build_zoo(owner, sizes=sizes, progress=False, name="digits-mlp")
    names = [m.name for m in zoo.members]
    assert len(names) == len(set(names)) == 8
    assert all(n.startswith("digits-mlp/") for n in names)
    assert len(zoo.split("test").positives) == 2 and len(zoo.split("train").negatives) == 1
    retrains = [n for n in names if "retrain" in n]
    seeds = {s: {n.split("seed=")[1] for n in retrains if zoo.members[names.index(n)].split == s} for s in SPLITS}
    assert not seeds["train"] & seeds["test"] and not seeds["calibration"] & seeds["test"]
    assert all(m.utility["accuracy"] > 0.5 for m in zoo.members)
    cached = list((tmp_path / "models").iterdir())
    assert len(cached) >= 7  # permute of the owner etc.; every member is a RefNet
    again = build_zoo(owner, sizes=sizes, progress=False, name="digits-mlp")  # loads from disk
    for a, b in zip(zoo.members, again.members):
        assert a.name == b.name and all(torch.equal(x, y) for x, y in zip(weights(a.model), weights(b.model)))


def test_train_reps_add_train_models_only() -> None:
    one, three = plan("classification"), plan("classification", train_reps=3)
    count = lambda p, split: sum(1 for s, _, _ in p if s == split)  # noqa: E731
    assert count(three, "train") == 3 * count(one, "train")
    for split in ("calibration", "test"):
        assert [(s, r) for s, r, _ in three if s == split] == [(s, r) for s, r, _ in one if s == split]
    assert {rep for s, _, rep in three if s != "train"} == {0}
    with pytest.raises(UsageError):
        plan("classification", train_reps=0)


def test_train_replicas_are_new_models_with_unique_names(setup, tmp_path, monkeypatch) -> None:
    owner, _ = setup
    monkeypatch.setenv("FP_REGISTRY_CACHE", str(tmp_path))
    sizes = {"train": (1, 1), "calibration": (0, 0), "test": (0, 0)}
    one = build_zoo(owner, sizes=sizes, progress=False, name="digits-mlp")
    two = build_zoo(owner, sizes=sizes, progress=False, name="digits-mlp", train_reps=2)
    assert [m.name for m in two.members[:2]] == [m.name for m in one.members]  # replica 0 = the one-replica zoo
    extra = two.members[2:]
    assert len(extra) == 2 and all(m.name.startswith("digits-mlp#r1/") and m.split == "train" for m in extra)
    a, b = one.split("train").negatives[0], two.split("train").negatives[1]  # retrains of replica 0 and 1
    assert a.name.split("seed=")[1] != b.name.split("seed=")[1]
    assert not all(torch.equal(x, y) for x, y in zip(weights(a.model), weights(b.model)))
    assert [m.replica for m in two.members] == [0, 0, 1, 1]
    assert [m.name for m in two.replicas(1).members] == [m.name for m in one.members]  # what a 1-replica method sees
    cut, whole = two.split("train").replicas(1), one.split("train")  # the same cut on one split (token DeepCore's)
    assert [m.name for m in cut.positives + cut.negatives] == [m.name for m in whole.positives + whole.negatives]
    moved = two.calibrate_on_replicas(1)  # fpreg evaluate --calibration-reps 1: replica 1 only sets thresholds
    assert [m.split for m in moved.members] == ["train", "train", "calibration", "calibration"]
    assert [m.name for m in moved.replicas(1).members] == [m.name for m in two.members]  # kept for 1-replica methods
    assert [m.name for m in moved.split("train").negatives] == [m.name for m in one.split("train").negatives]
    assert two.calibrate_on_replicas(2).members == two.members


def test_tail_lineages_come_last_and_leave_the_splits_as_they_were() -> None:
    one, tailed = plan("classification"), plan("classification", train_reps=3, tail_lineages=5)
    assert tailed[:-5] == plan("classification", train_reps=3)  # every split's recipes and replicas unchanged
    assert [(s, rep) for s, _, rep in tailed[-5:]] == [("tail", i) for i in range(5)]
    assert all(not r.derived and r.family == "homologous" and r.steps[0].attack == "retrain" for _, r, _ in tailed[-5:])
    assert len(plan("classification", sizes={"tail": 2}, tail_lineages=5)) == len(one) + 2
    assert plan("classification", holdout_families=("homologous",), tail_lineages=5)[-1][0] != "tail"
    with pytest.raises(UsageError):
        plan("classification", tail_lineages=-1)


def test_tail_lineages_are_new_retrains_outside_every_split(setup, tmp_path, monkeypatch) -> None:
    owner, _ = setup
    monkeypatch.setenv("FP_REGISTRY_CACHE", str(tmp_path))
    sizes = {"train": (0, 1), "calibration": (0, 1), "test": (0, 0)}
    zoo = build_zoo(owner, sizes=sizes, progress=False, name="digits-mlp", tail_lineages=3)
    tail = zoo.tail(3)
    assert [m.replica for m in tail] == [0, 1, 2] and all(m.split == "tail" and not m.derived for m in tail)
    assert [m.name for m in zoo.tail(2)] == [m.name for m in tail[:2]] and zoo.tail(0) == []
    for split in SPLITS:  # no split holds a tail model, so no threshold or verifier sees one unless asked
        part = zoo.split(split)
        assert not {m.name for m in part.positives + part.negatives} & {m.name for m in tail}
    seeds = {m.name.split("seed=")[1] for m in tail + zoo.split("calibration").negatives + zoo.split("train").negatives}
    assert len(seeds) == 5  # fresh seeds: no tail lineage repeats another or a split's retrain
    assert not all(torch.equal(x, y) for x, y in zip(weights(tail[0].model), weights(tail[1].model)))
    assert all(m.utility["accuracy"] > 0.5 for m in tail)  # real look-alikes, trained like the split's retrains
