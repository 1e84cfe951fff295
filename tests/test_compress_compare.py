"""The original beside its compressed copy (dq.compress.compare): identical models change
nothing, noisy weights change predictions in shares that add up, nonzeros count exactly,
an int8 model (torchao) borrows its float twin's gradients. Small real models, trained
for a few full-batch steps on digits, Adult and DecoyMNIST."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from dq import data, models
from dq.compress.compare import compare, footprint
from dq.compress.latency import batch_of, latencies, median_latency_ms
from dq.data_records import Splits
from dq.evaluation import evaluate
from dq.spec import RunSpec, to_spec

CPU = torch.device("cpu")


@dataclass
class Trained:
    spec: RunSpec
    splits: Splits
    model: nn.Module


def trained(overrides: Sequence[str], steps: int = 60) -> Trained:
    """A small model fitted with full-batch Adam on the training split (a second or so)."""
    from conftest import compose_config

    spec = to_spec(compose_config(["eval.bootstrap=0", "explain.n_samples=8", "explain.ig_steps=8", *overrides]))
    splits = data.build(spec.dataset, spec.seed)
    torch.manual_seed(spec.seed)
    model = models.build(spec.model, splits.meta)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(splits.train.x), splits.train.y).backward()
        optimizer.step()
    return Trained(spec, splits, model.eval())


@pytest.fixture(scope="module")
def digits() -> Trained:
    """An MLP on all 8×8 digits (~97% test accuracy), PGD at ε = 0.1, two attribution methods."""
    return trained(
        ["dataset=digits", "dataset.limit=null", "model=mlp", "eval.robust.eps=[0.1]", "eval.robust.steps=2"]
    )


def noisy(model: nn.Module, scale: float, seed: int = 0) -> nn.Module:
    """A copy with gaussian noise of ``scale`` × each weight's std added."""
    copy_ = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in copy_.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(noise * scale * float(parameter.std() if parameter.numel() > 1 else 1.0))
    return copy_


def test_identical_models_change_nothing(digits: Trained) -> None:
    out = compare(digits.model, copy.deepcopy(digits.model), digits.splits, digits.spec, CPU)
    assert out["compress/pred_change"] == 0.0
    changes = [key for key in out if key.startswith("compress/pred_change/class/")]
    assert len(changes) == 10 and all(out[key] == 0.0 for key in changes)
    for method in ("integrated_gradients", "saliency"):
        assert out[f"compress/explain/{method}/spearman"] == pytest.approx(1.0)
    deltas = [key for key in out if key.startswith("compress/delta/")]
    assert "compress/delta/test/robust_accuracy@0.1" in deltas
    assert "compress/delta/test/worst_class_accuracy" in deltas
    assert all(out[key] == 0.0 for key in deltas), {key: out[key] for key in deltas if out[key] != 0.0}
    # the original is evaluated the way a run evaluates it
    reference = evaluate(
        digits.model, digits.splits, eval_cfg=digits.spec.eval, trainer=digits.spec.trainer, device=CPU, seed=0
    )
    assert out["compress/original/test/accuracy"] == reference["test/accuracy"] > 0.9
    assert out["compress/original/test/robust_accuracy@0.1"] == reference["test/robust_accuracy@0.1"]
    worst = min(value for key, value in out.items() if key.startswith("compress/test/class_accuracy/"))
    assert out["compress/test/worst_class_accuracy"] == worst < 1.0
    params = models.count_parameters(digits.model)[0]
    assert out["compress/params"] == out["compress/nonzeros"] == out["compress/original/params"] == params
    assert out["compress/size_ratio"] == 1.0 and out["compress/sparsity"] == 0.0
    for key in ("latency_ms@1", "latency_ms@256"):
        assert out[f"compress/{key}"] > 0 and out[f"compress/original/{key}"] > 0
    assert out["compress/latency_threads"] == torch.get_num_threads()


def test_noise_changes_predictions_and_the_group_shares_average_to_the_overall_share() -> None:
    adult = trained(
        [
            "dataset=adult",
            "dataset.include_sensitive=true",
            "dataset.limit=600",
            "model=mlp",
            "explain.methods=[saliency]",
        ]
    )
    out = compare(adult.model, noisy(adult.model, 1.0), adult.splits, adult.spec, CPU)
    overall = out["compress/pred_change"]
    assert 0.0 < overall < 1.0
    test, meta = adult.splits.test, adult.splits.meta
    for kind, ids, names in (("group", test.group, meta.group_names), ("class", test.y, meta.class_names)):
        shares = {i: out[f"compress/pred_change/{kind}/{names[i]}"] for i in range(len(names))}
        weighted = sum(float((ids == i).sum()) * share for i, share in shares.items()) / len(test)
        assert weighted == pytest.approx(overall, abs=1e-12), kind
    for key in ("test/accuracy", "test/dp_diff", "test/worst_group_accuracy", "explain/saliency/sensitive_share"):
        assert out[f"compress/delta/{key}"] == pytest.approx(out[f"compress/{key}"] - out[f"compress/original/{key}"])
    groups = [out[f"compress/test/group_accuracy/{name}"] for name in meta.group_names]
    assert out["compress/test/worst_group_accuracy"] == min(groups)
    assert 0.0 < out["compress/original/explain/saliency/sensitive_share"] < 1.0
    assert out["compress/explain/saliency/spearman"] < 0.99


def test_the_worst_group_is_a_group_s_accuracy_not_an_interval_bound() -> None:
    """With bootstrap intervals the group keys have ``/ci_low`` bounds beside them, lower
    than any group's accuracy; the worst group is still the smallest group accuracy."""
    adult = trained(
        ["dataset=adult", "dataset.limit=600", "model=mlp", "eval.bootstrap=50", "explain.enabled=false"], steps=20
    )
    out = compare(adult.model, noisy(adult.model, 0.5), adult.splits, adult.spec, CPU)
    names = adult.splits.meta.group_names
    bounds = [out[f"compress/test/group_accuracy/{name}/ci_low"] for name in names]
    for prefix in ("compress/", "compress/original/"):
        groups = [out[f"{prefix}test/group_accuracy/{name}"] for name in names]
        assert out[f"{prefix}test/worst_group_accuracy"] == min(groups), prefix
    assert min(bounds) < out["compress/test/worst_group_accuracy"]  # the bounds are there, and lower


def test_nonzeros_count_exactly_on_a_pruned_copy(digits: Trained) -> None:
    pruned = copy.deepcopy(digits.model)
    linears = [module for module in pruned.modules() if isinstance(module, nn.Linear)]
    params = models.count_parameters(digits.model)[0]
    assert footprint(digits.model, digits.model)["compress/nonzeros"] == params  # no zero weights to begin with
    zeroed = 0
    for layer in linears:
        k = layer.weight.numel() // 3
        prune.l1_unstructured(layer, "weight", amount=k)  # exactly k entries of each weight
        zeroed += k
    # pruning not yet permanent: weight_orig and weight_mask in the state dict
    out = footprint(digits.model, pruned)
    assert out["compress/params"] == params
    assert out["compress/nonzeros"] == params - zeroed
    assert out["compress/sparsity"] == pytest.approx(zeroed / params)
    assert out["compress/size_ratio"] > 1.0  # the masks are stored too
    for layer in linears:
        prune.remove(layer, "weight")
    out = footprint(digits.model, pruned)
    assert out["compress/nonzeros"] == params - zeroed and out["compress/params"] == params
    assert out["compress/size_ratio"] == pytest.approx(1.0, abs=0.01)  # dense zeros weigh as much


def test_a_globally_pruned_model_beside_its_original(digits: Trained) -> None:
    pruned = copy.deepcopy(digits.model)
    weights = [(module, "weight") for module in pruned.modules() if isinstance(module, nn.Linear)]
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=0.9)
    out = compare(digits.model, pruned, digits.splits, digits.spec, CPU)
    pruned_weights = sum(module.weight.numel() for module, _ in weights)
    assert out["compress/nonzeros"] == out["compress/params"] - round(0.9 * pruned_weights)
    assert 0.0 < out["compress/pred_change"] < 0.5
    assert out["compress/delta/test/accuracy"] == pytest.approx(
        out["compress/test/accuracy"] - out["compress/original/test/accuracy"]
    )
    assert -1.0 <= out["compress/explain/integrated_gradients/spearman"] < 1.0


def test_the_original_run_s_metrics_are_used_where_they_have_the_key(digits: Trained) -> None:
    spec = digits.spec
    evaluated = evaluate(digits.model, digits.splits, eval_cfg=spec.eval, trainer=spec.trainer, device=CPU, seed=0)
    given = {**evaluated, "test/accuracy": 0.5, "test/loss": None}  # metrics.json may hold null
    del given["test/ece"]
    out = compare(digits.model, copy.deepcopy(digits.model), digits.splits, spec, CPU, original_metrics=given)
    assert out["compress/original/test/accuracy"] == 0.5
    assert out["compress/delta/test/accuracy"] == pytest.approx(evaluated["test/accuracy"] - 0.5)
    assert out["compress/original/test/ece"] == evaluated["test/ece"]  # missing there: evaluated here
    assert out["compress/delta/test/ece"] == 0.0
    assert out["compress/original/test/loss"] == evaluated["test/loss"]


def test_an_int8_model_borrows_its_float_twin_s_gradients(digits: Trained) -> None:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    int8 = copy.deepcopy(digits.model)
    quantize_(int8, Int8DynamicActivationInt8WeightConfig())
    with pytest.raises(ValueError, match="Int8Tensor, which have no gradients: pass gradient_model"):
        compare(digits.model, int8, digits.splits, digits.spec, CPU)
    out = compare(digits.model, int8, digits.splits, digits.spec, CPU, gradient_model=digits.model)
    # attributions and PGD ran on the twin (here the original itself); predictions on int8
    assert out["compress/explain/saliency/spearman"] == pytest.approx(1.0)
    assert out["compress/delta/test/robust_accuracy@0.1"] == 0.0
    assert abs(out["compress/delta/test/accuracy"]) <= 0.01
    assert out["compress/test/loss"] != out["compress/original/test/loss"]
    assert out["compress/size_ratio"] < 0.35  # int8 weights: about a quarter of float32's bytes
    assert 0.95 * out["compress/params"] < out["compress/nonzeros"] <= out["compress/params"]


def test_mask_mass_moves_with_the_model_and_matches_the_run_s_own(tmp_path: Path) -> None:
    from dq.explain.run import explain_run

    decoy = trained(["dataset=decoy_mnist", "dataset.limit=200", "model=mlp", "explain.methods=[saliency]"], steps=30)
    out = compare(decoy.model, noisy(decoy.model, 0.5), decoy.splits, decoy.spec, CPU)
    key = "explain/saliency/mask_mass"
    assert out[f"compress/delta/{key}"] == pytest.approx(out[f"compress/{key}"] - out[f"compress/original/{key}"])
    assert out[f"compress/delta/{key}"] != 0.0
    own = explain_run(decoy.model, decoy.splits, decoy.splits.meta, decoy.spec.explain, tmp_path, CPU, seed=0)
    assert out[f"compress/original/{key}"] == pytest.approx(own[key])


def test_latency_helper() -> None:
    x = torch.arange(6.0).reshape(3, 2)
    assert batch_of(x, 5).tolist() == [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3]]
    model = nn.Linear(2, 2)
    assert median_latency_ms(model, x, warmup=0, repeats=3) > 0
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        median_latency_ms(model, x, warmup=1, repeats=0)
    assert set(latencies(model, x, "p/")) == {"p/latency_ms@1", "p/latency_ms@256"}


def test_latency_batches_convert_only_the_timed_examples_of_a_compact_split() -> None:
    """A uint8 split is timed on float32 pixels (stored / 255), and only the examples of
    the batch are converted: a batch of 5 from 300 stored images is those 5, not a view
    of a converted whole."""
    pixels = torch.randint(0, 256, (300, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = batch_of(pixels, 5)
    assert batch.dtype == torch.float32 and batch.shape == (5, 3, 4, 4)
    assert torch.equal(batch, pixels[:5].float() / 255)
    assert batch.untyped_storage().nbytes() == 5 * 3 * 4 * 4 * 4
    assert set(latencies(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), pixels, "p/")) == {
        "p/latency_ms@1",
        "p/latency_ms@256",
    }
