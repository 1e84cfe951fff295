"""Degenerate models are named wherever they could mislead (dq.report.degenerate): real
Adult runs on the same 1,000 examples, one that learns, one that a fairness weight of 2
collapses to a constant predictor (accuracy = the majority rate, DP gap 0) and one that
Adam at lr = 1e9 drives to a finite but enormous loss; then their model cards, pages,
sweep summary, Pareto plot, Optuna front and best lines, and dq-table rows."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from omegaconf import OmegaConf
from rich.console import Console

import dq
from conftest import compose_config
from dq.inference import predict_logits
from dq.paper.compare import row_result
from dq.paper.plan import PlannedRow
from dq.paper.spec import Row
from dq.paper.write import row_note
from dq.report import degenerate
from dq.report.build import write_report
from dq.report.collect import find_runs, read_run
from dq.report.plots.pareto import DEGENERATE_LABEL, pareto_figure
from dq.report.plots.select import run_groups
from dq.sweep.pareto import best_lines, pareto_table, pareto_trials
from dq.sweep.summary import jobs_csv

SAME_DATA = ("dataset=adult", "model=mlp", "dataset.limit=1000", "explain.enabled=false")
RUNS = {
    "sound": [],
    "constant": ["regularizer=[fairness]", "regularizer.fairness.weight=2"],
    "diverged": ["optimizer.lr=1e9"],  # Adam
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The three runs, report.html and model_card.md on, each with its overrides recorded
    as Hydra would (so a report groups them by what differs)."""
    root = tmp_path_factory.mktemp("degenerate")
    out = {}
    for name, overrides in RUNS.items():
        cfg = compose_config([*SAME_DATA, "report.html=true", "report.model_card=true", *overrides])
        run_dir = root / name
        with (root / f"{name}.txt").open("w") as console:
            dq.train(cfg, run_dir=run_dir, console=Console(file=console))
        OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
        out[name] = run_dir
    return out


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def last_epoch(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_the_rules_fire_on_the_collapsed_and_the_diverged_run_and_not_on_the_sound_one(runs) -> None:
    loaded = dq.load_run(runs["sound"])
    labels = loaded.splits.test.y.numpy()
    majority = np.bincount(labels).max() / len(labels)
    logits = predict_logits(loaded.model, loaded.splits.test, torch.device("cpu"), 256, False, "bfloat16")
    top_share = np.bincount(logits.argmax(dim=1).numpy()).max() / len(labels)

    sound, constant, diverged = (metrics_of(runs[name]) for name in RUNS)
    for metrics in (sound, constant, diverged):  # the same test split under every run
        assert metrics["test/majority_rate"] == pytest.approx(majority, abs=1e-12)
    assert sound["test/top_class_share"] == pytest.approx(top_share, abs=1e-12) and top_share < 0.99
    assert sound["test/accuracy"] > sound["test/majority_rate"] + 0.05
    assert sound["train/diverged"] == 0.0 and degenerate.flags(sound) == []

    # The fairness weight collapses the model onto one class: the majority rate, DP gap 0.
    assert constant["test/top_class_share"] == 1.0
    assert constant["test/accuracy"] == pytest.approx(constant["test/majority_rate"], abs=1e-6)
    assert constant["test/dp_diff"] == 0.0
    assert degenerate.flags(constant) == ["constant predictor"]

    # lr=1e9 leaves every loss finite (the run completes) but far above ln 2.
    chance = math.log(2)
    assert math.isfinite(last_epoch(runs["diverged"])["val/loss"])
    assert last_epoch(runs["diverged"])["val/loss"] > 10 * chance > last_epoch(runs["sound"])["val/loss"]
    assert json.loads((runs["diverged"] / "run.json").read_text())["status"] == "completed"
    assert diverged["train/diverged"] == 1.0 and "diverged" in degenerate.flags(diverged)
    assert "warning: degenerate: training diverged" in (runs["diverged"].parent / "diverged.txt").read_text()
    assert "warning: degenerate" not in (runs["sound"].parent / "sound.txt").read_text()


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([{"train/loss": 0.40, "val/loss": 0.45}, {"train/loss": 0.30, "val/loss": 3.0}], False),  # overfitting
        ([{"train/loss": 0.40, "val/loss": 0.45}, {"train/loss": 0.35, "val/loss": 7.0}], True),  # > 10 ln 2
        ([{"train/loss": 0.30}, {"train/loss": 0.05}, {"train/loss": 0.60}], False),  # 12× its best, below ln 2
        ([{"train/loss": 0.30}, {"train/loss": 0.20}, {"train/loss": 2.5}], True),  # 12.5× its best, above ln 2
        ([], False),
    ],
)
def test_the_divergence_rule_on_epoch_records(losses: list[dict], expected: bool) -> None:
    assert degenerate.diverged(losses, num_classes=2) is expected


def test_model_card_and_page_name_the_degenerate_runs_and_show_the_majority_rate(runs) -> None:
    cards = {name: (runs[name] / "model_card.md").read_text() for name in RUNS}
    caveats = {name: card.partition("## Caveats and recommendations")[2] for name, card in cards.items()}
    rate = metrics_of(runs["constant"])["test/majority_rate"]
    assert (
        "- degenerate: a constant predictor: 100.0% of the test predictions are one class, and its accuracy "
        f"{rate:.3f} is that of always answering the majority class ({rate:.3f})" in caveats["constant"]
    )
    assert "- degenerate: training diverged (test loss " in caveats["diverged"]
    assert "degenerate" not in caveats["sound"]
    for card in cards.values():
        assert f"| test/majority_rate | {rate:.3g} |" in card  # beside test/accuracy in Overall

    pages = {name: (runs[name] / "report.html").read_text() for name in RUNS}
    assert "Degenerate model</h2>" in pages["constant"] and "a constant predictor: 100.0%" in pages["constant"]
    assert "Degenerate model</h2>" in pages["diverged"] and "training diverged" in pages["diverged"]
    assert "Degenerate model" not in pages["sound"]


def test_robust_accuracy_has_the_majority_rate_beside_it(tmp_path: Path) -> None:
    cfg = compose_config(
        [*SAME_DATA, "dataset.limit=200", "eval.robust.eps=[0.1]", "report.html=true", "report.model_card=true"]
    )
    dq.train(cfg, run_dir=tmp_path / "run", console=Console(file=(tmp_path / "console.txt").open("w")))
    metrics = metrics_of(tmp_path / "run")
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "| ε | robust accuracy | majority rate | worst-group robust accuracy |" in card
    row = f"| 0.1 | {metrics['test/robust_accuracy@0.1']:.3g} | {metrics['test/majority_rate']:.3g} |"
    assert row in card
    assert "<th>majority rate</th>" in (tmp_path / "run" / "report.html").read_text()


def test_sweep_summary_and_jobs_csv_mark_the_degenerate_runs(runs, tmp_path: Path) -> None:
    report = write_report(find_runs([runs["sound"].parent]), tmp_path, "three runs", metrics=["test/accuracy"])
    with (tmp_path / "summary.csv").open(newline="") as handle:
        marks = {row["label"]: row["degenerate"] for row in csv.DictReader(handle)}
    assert sorted(marks.values()) == ["", "constant predictor 1/1", "diverged 1/1"]
    assert [mark for label, mark in marks.items() if "regularizer.fairness.weight=2" in label] == [
        "constant predictor 1/1"
    ]
    assert [mark for label, mark in marks.items() if "optimizer.lr=1e9" in label] == ["diverged 1/1"]
    markdown = (tmp_path / "summary.md").read_text()
    assert "| n | degenerate | test/accuracy |" in markdown and "| constant predictor 1/1 |" in markdown
    assert "Degenerate: runs that are constant predictors or diverged" in report.summary.caption()
    assert "constant predictor 1/1" in (tmp_path / "summary.tex").read_text()

    jobs = [
        {"job": i, "status": "completed", "overrides": RUNS[name], "metrics": metrics_of(runs[name])}
        for i, name in enumerate(RUNS)
    ]
    rows = list(csv.DictReader(jobs_csv(jobs).splitlines()))
    assert [row["degenerate"] for row in rows] == ["", "constant predictor", "diverged"]


def test_a_summary_of_sound_runs_has_no_degenerate_column(runs, tmp_path: Path) -> None:
    write_report([read_run(runs["sound"])], tmp_path, "one run", metrics=["test/accuracy"])
    assert (tmp_path / "summary.csv").read_text().splitlines()[0] == (
        "label,n,test/accuracy/mean,test/accuracy/std,test/accuracy/n"
    )


def test_the_pareto_plot_crosses_out_the_constant_predictor_and_keeps_it_off_the_front(runs) -> None:
    groups, swept = run_groups(find_runs([runs["sound"].parent]))
    fig, caption = pareto_figure(groups, "dp", "three runs", swept)
    ax = fig.axes[0]
    sound = metrics_of(runs["sound"])
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    # Without the rule the constant predictor (gap 0) would be the front's fairest endpoint.
    assert "Pareto front (1 run)" in labels and f"{DEGENERATE_LABEL} (2)" in labels
    step = ax.get_lines()[0]
    assert np.allclose(step.get_xdata(), [100 * sound["test/dp_diff"]])
    assert np.allclose(step.get_ydata(), [100 * sound["test/accuracy"]])
    assert "2 degenerate run(s)" in caption


def _study(runs: dict[str, Path], names: list[str]) -> optuna.Study:
    """An Optuna study (accuracy up, DP gap down) whose trials are the runs' real numbers,
    marked as dq's search marks them."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for name in names:
        metrics = metrics_of(runs[name])
        attrs = {"dq.run_dir": str(runs[name])}
        if degenerate.flags(metrics):
            attrs["dq.degenerate"] = degenerate.flags(metrics)
        values = [metrics["test/accuracy"], metrics["test/dp_diff"]]
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=values, user_attrs=attrs))
    return study


def test_optuna_front_and_best_trials_leave_out_degenerate_trials(runs) -> None:
    objectives, directions = ["test/accuracy", "test/dp_diff"], ["maximize", "minimize"]
    study = _study(runs, list(RUNS))
    assert 1 in {t.number for t in study.best_trials}  # Optuna's own front holds the constant predictor
    assert [t.number for t in pareto_trials(study)] == [0]
    lines = best_lines(study, objectives, directions)
    assert lines[0] == "left out of the front and the best: 2 degenerate trial(s): 1 (constant predictor), 2 (diverged)"
    sound = metrics_of(runs["sound"])
    assert lines[2] == f"best test/dp_diff (minimize): {sound['test/dp_diff']:.4g} in trial 0: "
    rows = list(csv.DictReader(pareto_table(pareto_trials(study), objectives).splitlines()))
    assert [(row["trial"], row["degenerate"]) for row in rows] == [("0", "")]

    only_degenerate = _study(runs, ["constant", "diverged"])
    lines = best_lines(only_degenerate, objectives, directions)
    assert lines[1].startswith(
        "best test/dp_diff (minimize): 0 in trial 0 (DEGENERATE: constant predictor; every trial is)"
    )
    rows = list(csv.DictReader(pareto_table(pareto_trials(only_degenerate), objectives).splitlines()))
    assert ("0", "constant predictor") in [(row["trial"], row["degenerate"]) for row in rows]


def test_a_table_row_notes_its_degenerate_seed_and_the_majority_rate(runs) -> None:
    planned = PlannedRow("penalty", "run", [], Row(label="penalty"))
    result = row_result(planned, [read_run(runs["constant"])], ["test/accuracy", "test/dp_diff"], expected=1)
    rate = metrics_of(runs["constant"])["test/majority_rate"]
    assert row_note(result) == f"DEGENERATE seed 0: constant predictor; test majority rate {rate:.4f}"
    sound = row_result(PlannedRow("erm", "run", [], Row(label="erm")), [read_run(runs["sound"])], ["test/accuracy"], 1)
    assert row_note(sound) == f"test majority rate {rate:.4f}"


@pytest.mark.parametrize(
    ("share", "accuracy", "rate", "expected"),
    [
        (1.0, 0.746, 0.746, True),  # always the majority class
        (0.992, 0.75, 0.746, True),  # a few stray predictions do not hide it
        (0.995, 0.999, 0.995, False),  # a good model of a 0.5%-minority class predicts the majority 99.5% too
        (0.98, 0.746, 0.746, False),
        (1.0, 0.1, 0.746, True),  # always the minority class
    ],
)
def test_the_constant_predictor_rule(share: float, accuracy: float, rate: float, expected: bool) -> None:
    metrics = {"test/top_class_share": share, "test/accuracy": accuracy, "test/majority_rate": rate}
    assert degenerate.is_constant_predictor(metrics) is expected
    assert degenerate.is_constant_predictor({"test/accuracy": accuracy}) is False  # a run from before the keys
