"""dq.report.plots: which figures are made for which runs, what they show (axes, legend,
title, the points on the Pareto front, the means they plot), and the PNGs they write.

The runs are real: tiny trainings written to disk (Adult with a fairness weight swept over
two seeds and two PGD radii; digits with and without class groups), read back with
``find_runs`` as dq-report reads them.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf

import dq
from dq.report import degenerate
from dq.report.collect import RunResult, find_runs
from dq.report.plots import Figure, non_dominated, run_figures, runs_figures
from dq.report.plots.curves import curves_figure, run_curves_figure
from dq.report.plots.groups import run_groups_figure
from dq.report.plots.pareto import pareto_figure
from dq.report.plots.robustness import robustness_figure, run_robustness_figure
from dq.report.plots.select import run_groups
from dq.report.plots.style import DPI, MAX_LABEL, short_key, shorten
from dq.report.plots.weights import swept_terms, weight_figure

TINY = (
    "trainer.batch_size=64",
    "trainer.progress=false",
    "trainer.device=cpu",
    "explain.enabled=false",
)
# 1,000 examples: on 400, every run of the sweep predicted the majority class only (a constant
# predictor, dq.report.degenerate), which the Pareto plot crosses out and keeps off the front.
FAIR = ("dataset=adult", "model=mlp", "regularizer=[fairness]", "dataset.limit=1000", "trainer.epochs=2")
SWEEP = [(weight, seed) for weight in ("0", "1") for seed in (0, 1)]


def _train(run_dir: Path, overrides: list[str], fixed: tuple[str, ...]) -> None:
    """Train a tiny run in ``run_dir`` and record its overrides as Hydra would."""
    dq.train(dq.compose([*TINY, *fixed, *overrides]), run_dir=run_dir)
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")


@pytest.fixture(scope="module")
def fair_sweep(tmp_path_factory) -> Path:
    """Fairness weight 0/1 × seeds 0/1 on Adult, attacked at ε = 0.05 and 0.1, plus one
    failed run directory."""
    root = tmp_path_factory.mktemp("fair_sweep")
    for index, (weight, seed) in enumerate(SWEEP):
        overrides = [f"regularizer.fairness.weight={weight}", f"seed={seed}", "eval.robust.eps=[0.05,0.1]"]
        _train(root / str(index), overrides, FAIR)
    failed = root / "9"
    failed.mkdir()
    (failed / "run.json").write_text('{"status": "failed", "error": "boom", "overrides": ["seed=3"]}')
    return root


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory) -> dict[str, Path]:
    """A plain digits run (no groups, no attack) and one with each class as a group,
    attacked at ε = 0.1."""
    root = tmp_path_factory.mktemp("digits")
    fixed = ("dataset=digits", "model=mlp", "dataset.limit=300", "trainer.epochs=2")
    _train(root / "plain", ["seed=0"], fixed)
    _train(root / "classes", ["dataset.group=label", "eval.robust.eps=[0.1]"], fixed)
    return {"plain": root / "plain", "classes": root / "classes"}


def _png_size(figure: Figure) -> tuple[int, int]:
    image = imread(figure.path)
    assert image.ndim == 3 and image.shape[2] == 4 and image.dtype == np.float32
    assert 0.0 < float(image[..., :3].mean()) < 1.0  # something drawn on the white
    return image.shape[0], image.shape[1]


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [text.get_text() for text in legend.get_texts()] if legend else []


# ---------------------------------------------------------------------------- Pareto
def test_non_dominated_keeps_duplicates_and_drops_ties_that_lose_and_nan() -> None:
    points = [
        (0.10, 0.80),  # 0 front
        (0.10, 0.75),  # 1 same gap, lower accuracy: dominated by 0
        (0.20, 0.85),  # 2 front
        (0.20, 0.85),  # 3 duplicate of 2: neither dominates the other, both kept
        (0.30, 0.85),  # 4 same accuracy, larger gap: dominated by 2
        (0.05, 0.70),  # 5 front (fairest)
        (math.nan, 0.99),  # 6 never on the front
        (0.50, 0.84),  # 7 dominated by 2
    ]
    assert non_dominated(points, maximise=(False, True)) == [0, 2, 3, 5]
    # maximising both: 7 has the largest first coordinate, 4 the best (0.30, 0.85) after it
    assert non_dominated(points, maximise=(True, True)) == [4, 7]
    assert non_dominated([], maximise=(False, True)) == []
    assert non_dominated([(1.0, 1.0)], maximise=(False, True)) == [0]


def test_pareto_figure_marks_the_runs_no_other_run_beats(fair_sweep: Path) -> None:
    groups, swept = run_groups(find_runs([fair_sweep]))
    assert swept == ["regularizer.fairness.weight"]
    fig, caption = pareto_figure(groups, "dp", "fair sweep", swept)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "demographic-parity gap (percentage points, lower is fairer)"
    assert ax.get_ylabel() == "test accuracy (%)"
    assert fig.get_suptitle().startswith("fair sweep: test accuracy against demographic-parity gap")
    assert "swept: fairness.weight" in fig.get_suptitle()
    labels = _legend(ax)
    assert labels[:2] == ["fairness.weight=0", "fairness.weight=1"]
    runs = [r for g in groups for r in g.runs]
    assert not any(degenerate.flags(r.metrics) for r in runs)  # every run learned: all may be on the front
    points = [(100 * r.metrics["test/dp_diff"], 100 * r.metrics["test/accuracy"]) for r in runs]
    front = sorted(points[i] for i in non_dominated(points, (False, True)))
    assert labels[2] == f"Pareto front ({len(front)} runs)"
    step = ax.get_lines()[0]
    assert np.allclose(step.get_xdata(), [x for x, _ in front])
    assert np.allclose(step.get_ydata(), [y for _, y in front])
    assert caption.endswith(".") and "4 runs" in caption


# ---------------------------------------------------------------------------- a sweep
def test_runs_figures_of_a_fairness_sweep_make_every_kind_and_skip_the_failed_run(fair_sweep, tmp_path) -> None:
    runs = find_runs([fair_sweep])
    assert [r.ok for r in runs].count(False) == 1
    figures = runs_figures(runs, tmp_path / "plots", "fair sweep")
    names = [f.path.name for f in figures]
    assert names == [
        "pareto_accuracy_dp.png",
        "pareto_accuracy_eo.png",
        "robust_accuracy_vs_eps.png",
        "curves.png",
        "group_accuracy.png",
        "weight_fairness.png",
    ]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(names)  # no temporary left
    for figure in figures:
        assert figure.caption.endswith(".") and figure.caption.count(". ") == 0, figure.caption
        height, width = _png_size(figure)
        assert height >= 3 * DPI and width >= 5 * DPI
    # pareto: 6.2 × 4.4 inches; weights: five panels (accuracy, dp, eo, two radii) of 4.3 × 3.7
    assert _png_size(figures[0]) == (round(4.4 * DPI), round(6.2 * DPI))
    assert _png_size(figures[-1]) == (round(3.7 * DPI), round(5 * 4.3 * DPI))


def test_runs_figures_are_the_same_bytes_whatever_order_the_runs_come_in(fair_sweep, tmp_path) -> None:
    runs = find_runs([fair_sweep])
    first = runs_figures(runs, tmp_path / "a", "fair sweep")
    second = runs_figures(list(reversed(runs)), tmp_path / "b", "fair sweep")
    assert [f.path.name for f in first] == [f.path.name for f in second]
    for a, b in zip(first, second, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes(), a.path.name


def test_robustness_figure_plots_mean_accuracy_per_group_from_clean_to_the_largest_radius(fair_sweep) -> None:
    groups, swept = run_groups(find_runs([fair_sweep]))
    fig, caption = robustness_figure(groups, "fair sweep", swept)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "ε (L∞, standardised features)"
    assert ax.get_ylabel() == "test accuracy under PGD (%)"
    assert _legend(ax) == ["fairness.weight=0 (n=2)", "fairness.weight=1 (n=2)"]
    for line, group in zip(ax.get_lines(), groups, strict=True):
        assert list(line.get_xdata()) == [0.0, 0.05, 0.1]
        expected = [
            np.mean([r.metrics[k] for r in group.runs]) * 100
            for k in ("test/accuracy", "test/robust_accuracy@0.05", "test/robust_accuracy@0.1")
        ]
        assert np.allclose(line.get_ydata(), expected)
    assert "ε = 0.05, 0.1" in caption


def test_weight_figure_has_one_panel_per_metric_against_the_swept_weight(fair_sweep) -> None:
    groups, swept = run_groups(find_runs([fair_sweep]))
    terms, weights = swept_terms(groups)
    assert terms == ["fairness"]
    fig, _ = weight_figure(groups, "fairness", weights, "fair sweep", swept)
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "test accuracy (%)",
        "demographic-parity gap (pp)",
        "equalized-odds gap (pp)",
        "robust accuracy at ε = 0.05 (%)",
        "robust accuracy at ε = 0.1 (%)",
    ]
    ax = fig.axes[1]
    assert ax.get_xlabel() == "fairness weight λ"
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0.0, 1.0]
    by_weight = [[r for g in groups for r in g.runs if weights[id(r)]["fairness"] == w] for w in (0.0, 1.0)]
    assert np.allclose(line.get_ydata(), [100 * np.mean([r.metrics["test/dp_diff"] for r in rs]) for rs in by_weight])


def test_curves_figure_overlays_one_line_per_group_with_every_epoch(fair_sweep) -> None:
    groups, swept = run_groups(find_runs([fair_sweep]))
    fig, _ = curves_figure(groups, "fair sweep", swept)
    accuracy, loss = fig.axes
    assert (accuracy.get_xlabel(), accuracy.get_ylabel()) == ("epoch", "validation accuracy (%)")
    assert loss.get_ylabel() == "training loss (objective, nats)"
    assert len(_legend(loss)) == 2
    for line, group in zip(loss.get_lines(), groups, strict=True):
        assert list(line.get_xdata()) == [1, 2]
        last = [r.curves()[-1]["train/loss"] for r in group.runs]
        assert line.get_ydata()[-1] == pytest.approx(np.mean(last))


def test_many_settings_share_one_grey_legend_entry_and_get_no_group_bars(fair_sweep, tmp_path) -> None:
    runs = [r for r in find_runs([fair_sweep]) if r.ok]
    many = [  # 8 rates × 2 weights = 16 settings, as an Optuna search over the learning rate would give
        dataclasses.replace(run, overrides=[*run.overrides, f"optimizer.lr={copy}e-3"])
        for copy in range(1, 9)
        for run in runs
    ]
    groups, swept = run_groups(many)
    assert len(groups) == 16 and swept == ["optimizer.lr", "regularizer.fairness.weight"]
    names = [f.path.name for f in runs_figures(many, tmp_path, "search")]
    assert "group_accuracy.png" not in names and "curves.png" in names
    pareto, caption = pareto_figure(groups, "dp", "search", swept)
    assert _legend(pareto.axes[0])[0] == "runs (16 settings)" and "coloured" not in caption
    curves, _ = curves_figure(groups, "search", swept)
    assert _legend(curves.axes[0]) == ["16 settings (too many to tell apart)"]
    assert len(curves.axes[0].get_lines()) == 16  # one per setting, all grey


# ---------------------------------------------------------------------------- one run
def test_run_figures_of_a_run_with_groups_and_two_radii(fair_sweep, tmp_path) -> None:
    run = find_runs([fair_sweep / "3"])[0]  # fairness weight 1: its term is logged
    figures = run_figures(run, tmp_path)
    assert [f.path.name for f in figures] == ["curves.png", "group_accuracy.png", "robust_accuracy_vs_eps.png"]
    curves, _ = run_curves_figure(run, "r")
    assert [ax.get_ylabel() for ax in curves.axes] == [
        "loss (nats)",
        "regularizer term value (unweighted, as logged)",
        "accuracy (%)",
        "validation fairness gap (percentage points)",
    ]
    assert curves.axes[1].get_title() == "train/fairness"
    robust, caption = run_robustness_figure(run, "r")
    assert _legend(robust.axes[0]) == ["all test examples", "Female", "Male"]
    assert "overall and per group" in caption
    bars, _ = run_groups_figure(run, "r")
    (legend,) = bars.legends  # one legend for the figure, below the bars
    assert [t.get_text() for t in legend.get_texts()] == ["clean", "PGD ε = 0.05", "PGD ε = 0.1"]
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == ["Female", "Male"]


def test_a_run_without_groups_or_radii_gets_only_its_curves(digits_runs, tmp_path) -> None:
    run = find_runs([digits_runs["plain"]])[0]
    assert [f.path.name for f in run_figures(run, tmp_path / "one")] == ["curves.png"]
    assert [f.path.name for f in runs_figures([run], tmp_path / "many", "digits")] == ["curves.png"]
    curves, _ = run_curves_figure(run, "digits")
    assert [ax.get_ylabel() for ax in curves.axes] == ["loss (nats)", "accuracy (%)"]


def test_class_groups_are_horizontal_bars_sorted_least_robust_on_top(digits_runs) -> None:
    run = find_runs([digits_runs["classes"]])[0]
    fig, caption = run_groups_figure(run, "digits")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("test accuracy (%)")
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(names) == sorted(str(i) for i in range(10))
    robust = [run.metrics[f"test/group_robust_accuracy/{name}@0.1"] for name in names]
    assert robust == sorted(robust, reverse=True)  # bottom-up: the most robust class first
    assert ax.get_ylabel() == "class" and "10 classes" in caption and "least accurate on top" in caption
    # a gap between classes is no fairness measure: no fairness panel, no Pareto plot
    curves, _ = run_curves_figure(run, "digits")
    assert "validation fairness gap (percentage points)" not in [a.get_ylabel() for a in curves.axes]
    assert "test/dp_diff" in run.metrics and pareto_figure(run_groups([run, run])[0], "dp", "x", []) is None


def test_failed_runs_make_no_figures_and_no_directory(tmp_path) -> None:
    failed = RunResult(tmp_path / "run", "failed", problem="boom")
    assert run_figures(failed, tmp_path / "one") == []
    assert runs_figures([failed], tmp_path / "many", "x") == []
    assert not (tmp_path / "one").exists() and not (tmp_path / "many").exists()


def test_long_labels_are_shortened_readably() -> None:
    assert short_key("regularizer.fairness.weight") == "fairness.weight"
    assert short_key("+experiment") == "experiment"
    long = "a" * 60
    assert len(shorten(long)) == MAX_LABEL and shorten(long).endswith("…")
    assert shorten("short") == "short"


def test_importing_the_plots_api_loads_no_matplotlib_or_pandas() -> None:
    """dq-report imports it to answer --help: drawing libraries load on the first figure."""
    probe = (
        "import sys, dq.report.plots; print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'pandas'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_a_single_run_title_fits_the_figure(fair_sweep, tmp_path) -> None:
    """The title of a run's group_accuracy.png, as long as a timestamped run's, is
    wrapped inside the PNG's width (the characters-per-inch guess clipped it both sides)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    run = find_runs([fair_sweep / "3"])[0]
    fig, _ = run_groups_figure(run, "fair_adult_sweep (2026-12-07_10-16-45)")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    title = fig._suptitle.get_window_extent(canvas.get_renderer())
    assert fig.get_suptitle().count("\n") >= 1  # wrapped, not shrunk or dropped
    assert title.x0 >= 0 and title.x1 <= fig.bbox.width
