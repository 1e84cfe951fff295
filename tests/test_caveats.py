"""Every caveat rule of dq.report.caveats, on the numbers of REAL tiny runs: for each rule
one run where it must fire and one where it must not (the hand-made threshold edges are in
test_model_card.py). Three runs serve all rules:

- ``weak``: Adult, 200 examples, one epoch: badly calibrated, few test examples, and it
  predicts one class (no fairness gap; its PGD radius of 1 changes no prediction).
- ``trained``: Adult, 1,000 examples, three epochs, a radius of 0.01: calibrated, 1,000 test
  examples, robust, with a demographic-parity gap; its integrated gradients pass the
  randomisation check once one-hot zeros are left out (they read 1.00 before).
- ``digits``: an MLP on 8×8 digits grouped by class, one epoch, a radius of 0.3: a class far
  below the mean, robust accuracy collapses; integrated gradients' whole-map rho is high
  only through the black background.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

import dq
from conftest import compose_config
from dq.compress.explanation_shift import explanation_shift
from dq.explain.quality import randomized_copy
from dq.report.caveats import DEFAULT_THRESHOLDS, Thresholds, caveats
from dq.rundir.load import load_run
from dq.rundir.read import read_json

# Three real tiny runs (about 16 s together): in the default suite, so CI checks every caveat rule both ways.


def _run(tmp: Path, *overrides: str) -> dict[str, Any]:
    cfg = compose_config(["explain.metrics=[randomization]", *overrides])
    run_dir = tmp / "run"
    dq.train(cfg, run_dir=run_dir, console=Console(file=open(tmp / "console.txt", "w")))  # noqa: SIM115
    return read_json(run_dir / "metrics.json")


@pytest.fixture(scope="module")
def weak(tmp_path_factory) -> dict[str, Any]:
    return _run(
        tmp_path_factory.mktemp("weak"),
        "dataset=adult",
        "model=mlp",
        "dataset.limit=200",
        "eval.robust.eps=[1.0]",
        "explain.methods=[saliency]",
    )


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    _run(
        tmp,
        "dataset=adult",
        "model=mlp",
        "dataset.limit=1000",
        "trainer.epochs=3",
        "eval.robust.eps=[0.01]",
        "explain.methods=[integrated_gradients]",
    )
    return tmp / "run"


@pytest.fixture(scope="module")
def trained(trained_dir: Path) -> dict[str, Any]:
    return read_json(trained_dir / "metrics.json")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict[str, Any]:
    return _run(
        tmp_path_factory.mktemp("digits"),
        "dataset=digits",
        "model=mlp",
        "dataset.limit=300",
        "dataset.group=label",
        "eval.robust.eps=[0.3]",
        "explain.methods=[integrated_gradients,saliency]",
    )


def _lines(metrics: dict[str, Any], start: str, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    return [line for line in caveats(metrics, thresholds) if line.startswith(start)]


def test_group_below_mean(trained, digits) -> None:
    overall = digits["test/accuracy"]
    low = {
        k.rpartition("/")[2]: v for k, v in digits.items() if k.startswith("test/group_accuracy/") and "/ci_" not in k
    }
    low = {name: v for name, v in low.items() if isinstance(v, float) and overall - v > 0.10}
    assert low  # one epoch on 240 digits: some classes far behind
    expected = [f"accuracy of group {n} is {v:.0%}, against a mean of {overall:.0%}" for n, v in low.items()]
    assert sorted(_lines(digits, "accuracy of group")) == sorted(expected)
    assert trained["test/group_accuracy/Male"] < trained["test/accuracy"]  # below, but by under 10 points
    assert _lines(trained, "accuracy of group") == []


def test_fairness_gap(weak, trained) -> None:
    gap = trained["test/dp_diff"]
    assert gap > 0.12 and _lines(trained, f"fairness: demographic-parity difference is {gap:.3f} (above 0.10)")
    assert weak["test/dp_diff"] == 0.0 and _lines(weak, "fairness:") == []


def test_calibration(weak, trained) -> None:
    ece = weak["test/ece"]
    assert ece > 0.15 and _lines(weak, f"calibration: expected calibration error is {ece:.3f} (above 0.10)")
    assert trained["test/ece"] < 0.05 and _lines(trained, "calibration:") == []


def test_robust_accuracy(trained, digits) -> None:
    drop = _lines(digits, "robustness: robust accuracy at ε=0.3 is ")
    assert len(drop) == 1 and drop[0].endswith(f"against a clean accuracy of {digits['test/accuracy']:.0%}")
    assert digits["test/robust_accuracy@0.3"] < 0.5 * digits["test/accuracy"]
    assert _lines(trained, "robustness:") == []


def test_few_test_examples(weak, trained) -> None:
    assert _lines(weak, "few test examples: 200 (fewer than 500)")
    assert trained["test/examples"] >= 500 and _lines(trained, "few test examples") == []


def test_randomisation_on_tabular_compares_present_features(trained) -> None:
    """Adult's one-hot zeros get 0 from integrated gradients in both models; over the
    whole vector those ties gave rho 1.00 and a false caveat on every tabular run."""
    assert trained["explain/integrated_gradients/randomization_rho"] < 0.5
    assert "explain/integrated_gradients/randomization_rho_nonzero" not in trained  # tabular: one protocol
    assert _lines(trained, "explanations:") == []


def test_randomisation_on_images_names_the_black_background(digits) -> None:
    whole = digits["explain/integrated_gradients/randomization_rho"]
    nonzero = digits["explain/integrated_gradients/randomization_rho_nonzero"]
    assert whole > 0.8 and nonzero < 0.5  # the zeros, not the weights, make the whole-map rho
    assert _lines(digits, "explanations:") == [
        f"explanations: integrated_gradients's randomization_rho {whole:.2f} (above 0.50) comes from the input's "
        f"own zeros: its attributions are 0 wherever the input is 0, in the trained and the randomised model alike; "
        f"over the non-zero pixels it is {nonzero:.2f}, so the check does not show it ignores the weights"
    ]
    assert abs(digits["explain/saliency/randomization_rho"]) < 0.2  # a gradient is not 0 on the background


def test_randomisation_fails_where_nonzero_pixels_also_agree(digits) -> None:
    """The same run judged with a stricter threshold (0.4, below the non-zero rho): the
    rule calls the method blind to the weights, not the background."""
    strict = Thresholds(randomization_rho=0.4)
    assert _lines(digits, "explanations:", strict) == [
        "explanations: integrated_gradients fails the parameter-randomisation sanity check (randomization_rho "
        f"{digits['explain/integrated_gradients/randomization_rho']:.2f}, above 0.40): its attributions barely "
        "depend on the learned weights"
    ]


def test_compression_shift_shares_the_randomisation_scale_on_tabular(trained_dir: Path, trained) -> None:
    """Compression's explanation shift against the randomised copy is the run's own
    randomization_rho: both compare the present features on tabular data."""
    run = load_run(trained_dir)
    torch.manual_seed(run.spec.seed + 1)  # as dq.explain.run draws the randomised copy
    random = randomized_copy(run.model)
    shift = explanation_shift(run.model, random, run.splits, run.spec.explain, torch.device("cpu"), run.spec.seed)
    rho = trained["explain/integrated_gradients/randomization_rho"]
    assert shift["compressed"]["explain/integrated_gradients/spearman"] == pytest.approx(rho, abs=1e-9)
