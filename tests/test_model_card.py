"""model_card.md: Mitchell et al.'s sections from a real run, escaped cells, and the caveat
rules on hand-made metric dicts (each rule just above and just below its threshold)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from dq.report.caveats import Thresholds, caveats
from dq.report.collect import read_run
from dq.report.model_card import md, md_table, model_card
from dq.report.sections import SECTIONS
from report_runs import HOSTILE, hostile_copy, tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(
        tmp_path_factory.mktemp("card") / "run", "regularizer=[fairness]", "regularizer.fairness.weight=0.7"
    )


def test_card_has_mitchell_sections_objective_and_numbers(run_dir: Path) -> None:
    card = (run_dir / "model_card.md").read_text()
    assert re.findall(r"^## (.*)$", card, re.M) == list(SECTIONS)
    assert "| fairness | 0.7 | criterion=dp |" in card  # the objective's terms and weights
    assert "| task (cross-entropy) | 1 |  |" in card
    assert "Trainable fraction of the parameters: 1." in card
    assert "### By group" in card and "| Female |" in card and "robust accuracy ε=0.05" in card
    assert "sensitive attribute: sex (groups: Female, Male)" in card
    assert "### Explanation quality" in card and "randomization_rho" in card
    assert "- few test examples: 200 (fewer than 500); every number here is noisy" in card  # dataset.limit=200


def test_card_escapes_config_strings_and_table_cells(run_dir: Path, tmp_path: Path) -> None:
    card = model_card(read_run(hostile_copy(run_dir, tmp_path / "hostile")))
    assert HOSTILE not in card and "\\<script\\>alert(1)\\</script\\>" in card
    assert "| A&B \\<i\\> |" in card  # a group name from a metric, inside the By group table
    assert md("a|b\nc") == "a\\|b c"
    assert md_table(["k|", "v"], [["x|y", 1.5]]).splitlines()[2] == "| x\\|y | 1.5 |"


BASE = {"test/accuracy": 0.80, "test/ece": 0.02, "test/examples": 2000}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, []),
        (
            {"test/class_accuracy/Shirt": 0.55, "test/class_accuracy/Boot": 0.95},
            ["accuracy of class Shirt is 55%, against a mean of 80%"],
        ),
        ({"test/class_accuracy/Shirt": 0.71}, []),  # 9 points below: under the 10-point rule
        (
            {
                "test/robust_accuracy@0.1": 0.65,
                "test/class_robust_accuracy/Shirt@0.1": 0.11,
                "test/class_robust_accuracy/Boot@0.1": 0.80,
            },
            ["robust accuracy of class Shirt at ε=0.1 is 11%, against a mean of 65%"],
        ),
        (
            {"test/dp_diff": 0.12, "test/eo_diff": 0.09},
            ["fairness: demographic-parity difference is 0.120 (above 0.10)"],
        ),
        (
            {"test/robust_eo_diff@0.1": 0.3, "test/robust_accuracy@0.1": 0.7},
            ["fairness: equalized-odds difference on adversarial predictions at ε=0.1 is 0.300 (above 0.10)"],
        ),
        ({"test/ece": 0.15}, ["calibration: expected calibration error is 0.150 (above 0.10)"]),
        (
            {"test/robust_accuracy@0.3": 0.39},
            ["robustness: robust accuracy at ε=0.3 is 39%, against a clean accuracy of 80%"],
        ),
        ({"test/robust_accuracy@0.3": 0.41}, []),
        (
            {"explain/ig/randomization_rho": 0.93, "explain/saliency/randomization_rho": 0.2},
            ["explanations: ig fails the parameter-randomisation sanity check (randomization_rho 0.93, above 0.50)"],
        ),
        ({"test/examples": 120}, ["few test examples: 120 (fewer than 500)"]),
    ],
)
def test_caveat_rules(extra: dict, expected: list[str]) -> None:
    found = caveats({**BASE, **extra})
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line


def test_caveat_thresholds_can_be_chosen() -> None:
    metrics = {**BASE, "test/group_accuracy/a": 0.74}
    assert caveats(metrics) == []
    assert caveats(metrics, Thresholds(below_mean=0.05)) == ["accuracy of group a is 74%, against a mean of 80%"]


def test_card_says_which_epoch_was_tested(run_dir: Path, tmp_path: Path) -> None:
    """select=best names the monitored metric; select=last claims no model selection."""
    card = (run_dir / "model_card.md").read_text()
    assert "model selected on the validation split: the epoch with the best val/accuracy (epoch 1 of 1)." in card
    last = tiny_run(tmp_path / "last", "trainer.select=last", "trainer.epochs=2", "explain.enabled=false")
    card = (last / "model_card.md").read_text()
    assert "the last epoch's weights are tested (epoch 2 of 2; trainer.select=last, no model selection)." in card
    assert "model selected" not in card


def test_card_leaves_out_an_unset_limit(run_dir: Path, tmp_path: Path) -> None:
    card = (run_dir / "model_card.md").read_text()
    assert "The test split of adult (test_fraction 0.2, limit 200, 200 examples), never seen" in card
    copy = tmp_path / "no_limit"
    shutil.copytree(run_dir, copy)
    config = copy / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("limit: 200", "limit: null"))
    (copy / "checksums.json").unlink()  # the config was edited by hand: as a run from before checksums
    card = model_card(read_run(copy))
    assert "The test split of adult (test_fraction 0.2, 200 examples), never seen" in card
    assert "limit ," not in card and "limit None" not in card
