"""The three kinds of ``report.html``: one run, one sweep (or any set of runs), one paper
table. Each is one self-contained file (see ``dq.report.page``): open it in a browser,
nothing else is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq.report import degenerate
from dq.report.breakdown import Breakdown, breakdowns, explain_metrics, fairness_gaps, grouped, robust_by_eps
from dq.report.collect import RunResult
from dq.report.page import Page, figure_html
from dq.rundir.layout import HYDRA_DIR

if TYPE_CHECKING:
    import pandas as pd

    from dq.report.plots import Figure

EXPLANATIONS = "explanations"  # docs/design.md's output contract: <run>/explanations/<method>.png
# Columns of metrics.jsonl shown per epoch when a run has no curve figures (at most this many).
CURVE_COLUMNS = 9


def write_run_html(run: RunResult, figures: Sequence[Figure], out_path: Path) -> Path:
    """``report.html`` for one run: what it is, its metrics, curves, fairness by group,
    robustness by ε and by group or class, the explanation gallery, its config and
    provenance. A run that did not complete gets a page that says why."""
    page = Page(f"Run {run.run_dir.name}", subtitle=f"{run.status} · {run.run_dir}")
    page.section("Run", page.key_values(_run_facts(run)))
    if run.problem:
        page.section("Problem", page.text(run.problem, "problem"))
    if run.metrics and degenerate.flags(run.metrics):
        page.section("Degenerate model", page.items(degenerate.caveat_lines(run.metrics)))
    if run.metrics:
        page.section("Metrics", *_metric_tables(page, run.metrics))
    page.section("Curves", *_curves(page, run, figures))
    if run.metrics:
        page.section("Fairness by group", *_fairness(page, run.metrics))
        page.section("Robustness by ε and by class", *_robustness(page, run.metrics))
        page.section("Explanations", *_gallery(page, run))
    page.section("Config", page.pre(_config_text(run)))
    page.section("Provenance", page.key_values(_provenance(run.info)))
    return page.write(out_path)


def write_sweep_html(
    title: str, summary_frame: pd.DataFrame, figures: Sequence[Figure], problems: Sequence[RunResult], out_path: Path
) -> Path:
    """``report.html`` for a sweep: the summary table (mean ± std and n per group of runs),
    the comparison figures, and the runs that failed or could not be read."""
    page = Page(title, subtitle=f"{len(summary_frame)} group(s) of runs · {len(problems)} problem run(s)")
    page.section("Summary", page.table(summary_frame))
    page.section("Figures", page.figures(figures) if figures else page.text("no figures for these runs"))
    if problems:
        rows = [[str(run.run_dir), run.status, run.problem or ""] for run in problems]
        page.section("Failed and broken runs", page.rows(["run", "status", "problem"], rows))
    return page.write(out_path)


def write_table_html(
    title: str, frame: pd.DataFrame, notes: Sequence[str], figures: Sequence[Figure], out_path: Path
) -> Path:
    """``report.html`` for a paper table: the comparison with the source (source value,
    ours, difference, within tolerance), the notes on settings and sources, the figures."""
    page = Page(title, subtitle="comparison with the source")
    page.section("Comparison with the source", page.table(frame))
    if notes:
        page.section("Notes", page.items(notes))
    if figures:
        page.section("Figures", page.figures(figures))
    return page.write(out_path)


def _run_facts(run: RunResult) -> dict[str, Any]:
    info = run.info
    return {
        "directory": str(run.run_dir),
        "status": run.status,
        "experiment": (run.config().get("experiment_name") if run.status != "broken" else None) or "",
        "overrides": " ".join(run.overrides) or "(none)",
        "seed": "" if run.seed is None else str(run.seed),
        "start": info.get("start", ""),
        "end": info.get("end", ""),
    }


def _metric_tables(page: Page, metrics: dict[str, Any]) -> list[str]:
    blocks = [
        f"<div>{page.heading(f'{name}/*')}{page.key_values(values, ('metric', 'value'))}</div>"
        for name, values in grouped(metrics).items()
    ]
    return [f'<div class="grid">{"".join(blocks)}</div>']


def _curves(page: Page, run: RunResult, figures: Sequence[Figure]) -> list[str]:
    """The curve figures; with none, the epochs as a table (the first few columns)."""
    if figures:
        return [page.figures(figures)]
    epochs = run.curves()
    if not epochs:
        return [page.text("no metrics.jsonl: no epochs recorded")]
    columns = list(dict.fromkeys(key for epoch in epochs for key in epoch if not key.startswith("time/")))
    columns = columns[:CURVE_COLUMNS]
    return [
        page.text("no curve figures for this run; the epochs from metrics.jsonl:"),
        page.rows(columns, ([epoch.get(col, "") for col in columns] for epoch in epochs)),
    ]


def _fairness(page: Page, metrics: dict[str, Any]) -> list[str]:
    parts = []
    for part in breakdowns(metrics):
        if part.kind != "group":
            continue
        header = [part.kind, "accuracy", *(f"robust accuracy @ ε={eps}" for eps in part.robust)]
        parts.append(page.rows(header, _clean_and_robust_rows(part)))
    gaps = fairness_gaps(metrics)
    if gaps:
        parts += [page.heading("Gaps between groups"), page.key_values(gaps, ("metric", "value"))]
    return parts or [page.text("no groups in this run's data: no fairness metrics")]


def _robustness(page: Page, metrics: dict[str, Any]) -> list[str]:
    by_eps = robust_by_eps(metrics)
    if not by_eps:
        return [page.text("not attacked: eval.robust.eps is empty")]
    clean = metrics.get("test/accuracy", "")
    worst = {
        eps: metrics[f"test/worst_group_robust_accuracy@{eps}"]
        for eps in by_eps
        if f"test/worst_group_robust_accuracy@{eps}" in metrics
    }
    rate = metrics.get(degenerate.MAJORITY_RATE, "")  # a robust accuracy near it is no robustness
    header = ["ε", "robust accuracy", "clean accuracy", "majority rate"]
    header += ["worst-group robust accuracy"] if worst else []
    rows = [[eps, value, clean, rate, *([worst.get(eps, "")] if worst else [])] for eps, value in by_eps.items()]
    parts = [page.rows(header, rows)]
    for part in breakdowns(metrics):
        if not part.robust:
            continue
        header = [part.kind, "clean", *(f"ε={eps}" for eps in part.robust)]
        parts += [page.heading(f"robust accuracy by {part.kind}"), page.rows(header, _clean_and_robust_rows(part))]
    return parts


def _clean_and_robust_rows(part: Breakdown) -> list[list[Any]]:
    """One row per group or class of a breakdown: its clean accuracy, then its robust
    accuracy at each ε (blank where a value is missing)."""
    return [
        [name, part.clean.get(name, ""), *(values.get(name, "") for values in part.robust.values())]
        for name in part.names()
    ]


def _gallery(page: Page, run: RunResult) -> list[str]:
    """Each explanations/<method>.png beside its method's explain/<method>/* metrics."""
    quality = explain_metrics(run.metrics)
    pictures = sorted((run.run_dir / EXPLANATIONS).glob("*.png"))
    if not pictures and not quality:
        return [page.text("no explanations (explain.enabled=false)")]
    cards = []
    for picture in pictures:
        method = picture.stem
        values = quality.get(method, {})
        table = page.key_values(values, ("metric", "value")) if values else page.text("no metrics recorded")
        picture_html = figure_html(picture, f"{method} attributions")
        cards.append(f'<div class="card">{page.heading(method)}<div class="row">{picture_html}{table}</div></div>')
    for method in (m for m in quality if m not in {p.stem for p in pictures}):
        cards.append(
            f'<div class="card">{page.heading(method)}{page.key_values(quality[method], ("metric", "value"))}</div>'
        )
    return [f'<div class="gallery">{"".join(cards)}</div>']


def _config_text(run: RunResult) -> str:
    path = run.run_dir / HYDRA_DIR / "config.yaml"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return f"(no {HYDRA_DIR}/config.yaml)"


def _provenance(info: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    git = info.get("git") or {}
    facts["git commit"] = git.get("commit") or "unknown"
    facts["git dirty"] = git.get("dirty")
    facts["command"] = " ".join(map(str, info.get("command") or []))
    facts["python"] = info.get("python", "")
    facts["host"] = info.get("host", "")
    for key, value in (info.get("device") or {}).items():
        facts[f"device {key}"] = value
    for name, version in (info.get("packages") or {}).items():
        facts[f"package {name}"] = version or "not installed"
    if info.get("error"):
        facts["error"] = info["error"]
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in facts.items()}
