"""scripts/scaling.py on a tiny grid: it trains through dq's API and writes the CSV and the
plot (issue 10, item 6). The full grid's figures are in docs/evidence/speed.md; no timing is asserted."""

from __future__ import annotations

import csv

import pytest

from script_module import load_script


def test_scaling_script_writes_the_csv_and_the_plot(tmp_path) -> None:
    scaling = load_script("scaling.py")
    out = tmp_path / "bench" / "scaling"
    args = ["--dataset", "digits", "--sizes", "64", "128", "--steps", "1", "2", "--pgd-size", "64", "--out", str(out)]
    scaling.main(args)
    with out.with_suffix(".csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == scaling.COLUMNS
        rows = list(reader)
    assert [(r["sweep"], r["x"], r["train_examples"], r["pgd_steps"]) for r in rows] == [
        ("size", "64", "64", "0"),
        ("size", "128", "128", "0"),
        ("pgd_steps", "1", "64", "1"),
        ("pgd_steps", "2", "64", "2"),
    ]
    assert all(float(r["epoch_s"]) > 0 for r in rows)
    for sweep in ("size", "pgd_steps"):
        mine = [r for r in rows if r["sweep"] == sweep]
        # two points: the line goes through both, so R² is 1 and the slope is their difference
        (a, b) = mine
        assert float(a["fit_r2"]) == pytest.approx(1.0)
        slope = (float(b["epoch_s"]) - float(a["epoch_s"])) / (float(b["x"]) - float(a["x"]))
        assert float(a["fit_slope"]) == pytest.approx(slope, rel=1e-6, abs=1e-12)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_recovers_a_line_and_scores_a_bend_below_one() -> None:
    fit = load_script("scaling.py").Fit
    line = fit.of([1, 2, 5, 10], [0.5 + 2 * x for x in (1, 2, 5, 10)])
    assert (line.slope, line.intercept, line.r2) == pytest.approx((2.0, 0.5, 1.0))
    assert fit.of([1, 2, 5, 10], [x**2 for x in (1, 2, 5, 10)]).r2 < 0.99
