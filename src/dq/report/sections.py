"""What each report page says, as a ``dq.report.document.Document``: the one place that
decides sections, rows and caveats. ``dq.report.html`` and ``dq.report.model_card`` only
format what these functions return.

- ``run_page``: a run's ``report.html`` (what it is, metrics, curves, fairness by group,
  robustness by ε and by class, explanations, config, provenance);
- ``card``: its ``model_card.md``, after Mitchell et al. 2019, "Model Cards for
  Model Reporting" (FAT* 2019): model details, intended use, factors, metrics, evaluation
  and training data, quantitative analyses (overall and by group), ethical considerations,
  caveats and recommendations; plus what dq measures beyond them (the objective's terms
  and weights, the trainable fraction). Its caveats come from ``dq.report.caveats``' rules,
  whose thresholds the card states;
- ``sweep_page`` and ``table_page``: a sweep's and a paper table's ``report.html``.

Everything comes from the run directory (config, run.json, metrics.json, metrics.jsonl,
the explanation pictures).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dq import metric_keys as keys
from dq.report import degenerate
from dq.report.breakdown import Breakdown, breakdowns, explain_metrics, fairness_gaps, grouped, robust_by_eps
from dq.report.caveats import DEFAULT_THRESHOLDS, Thresholds, caveats
from dq.report.collect import RunResult
from dq.report.document import Block, Bullets, Card, Code, Columns, Document, Gallery, Heading, Image, Paragraph, Table
from dq.report.page import format_value, frame_rows
from dq.rundir.layout import HYDRA_DIR

if TYPE_CHECKING:
    import pandas as pd

    from dq.report.plots import Figure

EXPLANATIONS = "explanations"  # docs/design.md's output contract: <run>/explanations/<method>.png
# Columns of metrics.jsonl shown per epoch when a run has no curve figures (at most this many).
CURVE_COLUMNS = 9
SECTIONS = (  # the model card's, in order
    "Model details",
    "Intended use",
    "Factors",
    "Metrics",
    "Evaluation data",
    "Training data",
    "Quantitative analyses",
    "Objective",
    "Ethical considerations",
    "Caveats and recommendations",
)
OVERALL = (
    keys.test(keys.ACCURACY),
    degenerate.MAJORITY_RATE,
    degenerate.TOP_CLASS_SHARE,
    keys.test(keys.LOSS),
    keys.test(keys.ECE),
    keys.test("examples"),
)


# --------------------------------------------------------------------------- report.html
def run_page(run: RunResult, figures: Sequence[Figure]) -> Document:
    """A run's page; one that did not complete says why (its Problem section)."""
    doc = Document(f"Run {run.run_dir.name}", subtitle=f"{run.status} · {run.run_dir}")
    doc.add("Run", _key_values(_run_facts(run), ("key", "value")))
    if run.problem:
        doc.add("Problem", Paragraph(run.problem, "problem"))
    if run.metrics and degenerate.flags(run.metrics):
        doc.add("Degenerate model", Bullets(degenerate.caveat_lines(run.metrics)))
    if run.metrics:
        doc.add("Metrics", _metric_tables(run.metrics))
    doc.add("Curves", *_curves(run, figures))
    if run.metrics:
        doc.add("Fairness by group", *_fairness(run.metrics))
        doc.add("Robustness by ε and by class", *_robustness(run.metrics))
        doc.add("Explanations", *_gallery(run))
    doc.add("Config", Code(_config_text(run)))
    doc.add("Provenance", _key_values(_provenance(run.info), ("key", "value")))
    return doc


def sweep_page(
    title: str, summary_frame: pd.DataFrame, figures: Sequence[Figure], problems: Sequence[RunResult]
) -> Document:
    """A sweep's page: the summary table (mean ± std and n per group of runs), the
    comparison figures, and the runs that failed or could not be read."""
    doc = Document(title, subtitle=f"{len(summary_frame)} group(s) of runs · {len(problems)} problem run(s)")
    doc.add("Summary", Table(*frame_rows(summary_frame)))
    doc.add("Figures", *_images(figures) if figures else [Paragraph("no figures for these runs")])
    if problems:
        rows = [[str(run.run_dir), run.status, run.problem or ""] for run in problems]
        doc.add("Failed and broken runs", Table(["run", "status", "problem"], rows))
    return doc


def table_page(title: str, frame: pd.DataFrame, notes: Sequence[str], figures: Sequence[Figure]) -> Document:
    """A paper table's page: the comparison with the source (source value, ours,
    difference, within tolerance), the notes on settings and sources, the figures."""
    doc = Document(title, subtitle="comparison with the source")
    doc.add("Comparison with the source", Table(*frame_rows(frame)))
    if notes:
        doc.add("Notes", Bullets(notes))
    if figures:
        doc.add("Figures", *_images(figures))
    return doc


def _images(figures: Sequence[Figure]) -> list[Block]:
    return [Image(fig.path, fig.caption) for fig in figures]


def _key_values(values: Mapping[str, Any], header: Sequence[str] = ("metric", "value")) -> Table:
    return Table(header, [[key, value] for key, value in values.items()])


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


def _metric_tables(metrics: dict[str, Any]) -> Columns:
    return Columns([[Heading(f"{name}/*"), _key_values(values)] for name, values in grouped(metrics).items()])


def _curves(run: RunResult, figures: Sequence[Figure]) -> list[Block]:
    """The curve figures; with none, the epochs as a table (the first few columns)."""
    if figures:
        return _images(figures)
    epochs = run.curves()
    if not epochs:
        return [Paragraph("no metrics.jsonl: no epochs recorded")]
    columns = list(dict.fromkeys(key for epoch in epochs for key in epoch if keys.parse(key).family != keys.TIME))
    columns = columns[:CURVE_COLUMNS]
    return [
        Paragraph("no curve figures for this run; the epochs from metrics.jsonl:"),
        Table(columns, [[epoch.get(col, "") for col in columns] for epoch in epochs]),
    ]


def _fairness(metrics: dict[str, Any]) -> list[Block]:
    parts: list[Block] = []
    for part in breakdowns(metrics):
        if part.kind != "group":
            continue
        header = [part.kind, "accuracy", *(f"robust accuracy @ ε={eps}" for eps in part.robust)]
        parts.append(Table(header, _clean_and_robust_rows(part)))
    worst = keys.worst_accuracy(keys.GROUP)
    if worst in metrics:  # Sagawa et al.'s measure of group robustness
        parts.append(_key_values({worst: metrics[worst]}))
    gaps = fairness_gaps(metrics)
    if gaps:
        parts += [Heading("Gaps between groups"), _key_values(gaps)]
    return parts or [Paragraph("no groups in this run's data: no fairness metrics")]


def _robustness(metrics: dict[str, Any]) -> list[Block]:
    by_eps = robust_by_eps(metrics)
    if not by_eps:
        return [Paragraph("not attacked: eval.robust.eps is empty")]
    clean = metrics.get(keys.test(keys.ACCURACY), "")
    worst = _worst_group(metrics, by_eps)
    rate = metrics.get(degenerate.MAJORITY_RATE, "")  # a robust accuracy near it is no robustness
    header = ["ε", "robust accuracy", "clean accuracy", "majority rate"]
    header += ["worst-group robust accuracy"] if worst else []
    rows = [[eps, value, clean, rate, *([worst.get(eps, "")] if worst else [])] for eps, value in by_eps.items()]
    parts: list[Block] = [Table(header, rows)]
    for part in breakdowns(metrics):
        if not part.robust:
            continue
        header = [part.kind, "clean", *(f"ε={eps}" for eps in part.robust)]
        parts += [Heading(f"robust accuracy by {part.kind}"), Table(header, _clean_and_robust_rows(part))]
    return parts


def _worst_group(metrics: Mapping[str, Any], by_eps: Mapping[str, Any]) -> dict[str, Any]:
    """The worst group's robust accuracy at each ε that has one."""
    return {
        eps: metrics[keys.worst_group_robust_accuracy(eps)]
        for eps in by_eps
        if keys.worst_group_robust_accuracy(eps) in metrics
    }


def _clean_and_robust_rows(part: Breakdown) -> list[list[Any]]:
    """One row per group or class of a breakdown: its clean accuracy, then its robust
    accuracy at each ε (blank where a value is missing)."""
    return [
        [name, part.clean.get(name, ""), *(values.get(name, "") for values in part.robust.values())]
        for name in part.names()
    ]


def _gallery(run: RunResult) -> list[Block]:
    """Each explanations/<method>.png beside its method's explain/<method>/* metrics."""
    quality = explain_metrics(run.metrics)
    pictures = sorted((run.run_dir / EXPLANATIONS).glob("*.png"))
    if not pictures and not quality:
        return [Paragraph("no explanations (explain.enabled=false)")]
    cards = []
    for picture in pictures:
        values = quality.get(picture.stem, {})
        beside = _key_values(values) if values else Paragraph("no metrics recorded")
        cards.append(Card(picture.stem, Image(picture, f"{picture.stem} attributions"), [beside]))
    shown = {p.stem for p in pictures}
    cards += [Card(method, None, [_key_values(values)]) for method, values in quality.items() if method not in shown]
    return [Gallery(cards)]


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


# --------------------------------------------------------------------------- model_card.md
def card(run: RunResult, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Document:
    """The model card of a completed run, its sections in ``SECTIONS``' order."""
    cfg, metrics, info = run.config(), run.metrics, run.info
    dataset, model = cfg.get("dataset") or {}, cfg.get("model") or {}
    trainer, optimizer = cfg.get("trainer") or {}, cfg.get("optimizer") or {}
    regularizers: Mapping[str, Any] = cfg.get("regularizer") or {}
    doc = Document(f"Model card: {_text(cfg.get('experiment_name', 'run'))} · {run.run_dir.name}")

    git = info.get("git") or {}
    details = [
        ["model", f"{model.get('name', '?')} ({_options(model, ('name',))})"],
        [
            "parameters",
            f"{metrics.get(keys.params('total'), '?')} total, {metrics.get(keys.params('trainable'), '?')} trainable "
            f"(trainable fraction {format_value(metrics.get(keys.params('trainable_fraction'), ''))})",
        ],
        ["trained", f"{info.get('start', '?')} to {info.get('end', '?')}, seed {run.seed}"],
        [
            "code",
            f"dq {(info.get('packages') or {}).get('dq', '?')}, git {git.get('commit') or 'unknown'}"
            + (" (uncommitted changes)" if git.get("dirty") else ""),
        ],
        ["overrides", " ".join(run.overrides) or "(none)"],
        ["run directory", str(run.run_dir)],
    ]
    doc.add("Model details", Table(["", ""], details))
    doc.add(
        "Intended use",
        Paragraph(
            f"A research model from dq's {_text(cfg.get('experiment_name', ''))} experiment, trained to measure the "
            f"decision quality of its {_text(model.get('name', ''))} classifier on {_text(dataset.get('name', ''))}: "
            "accuracy together with fairness, robustness, explanation quality and parameter cost. It is not meant for "
            "decisions about people; its numbers describe this run's data split and seed only."
        ),
    )
    doc.add("Factors", Bullets(_factors(cfg, metrics) or ["no groups or attacks in this run's evaluation"]))
    doc.add(
        "Metrics",
        Paragraph(
            "Accuracy, loss and expected calibration error on the test split; accuracy per group; the demographic-"
            "parity and equalized-odds differences (fairlearn) between groups; robust accuracy under a PGD attack at "
            "each ε; explanation quality per attribution method (infidelity, sensitivity, randomization_rho, "
            "sparseness). The caveats below come from these rules:"
        ),
        Bullets([*degenerate.RULES, *thresholds.describe()]),
    )
    doc.add(
        "Evaluation data",
        Paragraph(
            f"The test split of {_text(dataset.get('name', '?'))} "
            f"({_split_facts(dataset, metrics.get(keys.test('examples')))}), never seen in training or model selection."
        ),
    )
    doc.add(
        "Training data",
        Paragraph(
            f"The training split of the same dataset ({_options(dataset, ('name',))}); "
            f"{_text(trainer.get('epochs', '?'))} epochs, batch size {_text(trainer.get('batch_size', '?'))}, "
            f"optimizer {_text(optimizer.get('name', '?'))} ({_options(optimizer, ('name',))}); "
            f"{_selection(trainer, metrics)}."
        ),
    )
    doc.add("Quantitative analyses", *_quantitative(metrics))
    doc.add("Objective", *_objective(regularizers, metrics))
    ethics = [
        "The groups measured are those the dataset records; other groups and intersections may fare worse.",
        "Fairness gaps computed on one test split with one seed move between seeds: compare sweeps, not single runs.",
    ]
    if dataset.get("sensitive") and dataset.get("include_sensitive") is False:
        ethics.append("The sensitive attribute is withheld from the model's inputs, but proxies of it may remain.")
    doc.add("Ethical considerations", Bullets(ethics))
    found = degenerate.caveat_lines(metrics) + caveats(metrics, thresholds)
    doc.add(
        "Caveats and recommendations",
        Bullets(found) if found else Paragraph("None of the rules in Metrics fired for this run."),
    )
    return doc


def _text(value: Any) -> str:
    """A config value as text (numbers as the tables print them)."""
    return value if isinstance(value, str) else format_value(value)


def _options(node: Mapping[str, Any], skip: Sequence[str] = ()) -> str:
    return ", ".join(f"{key}={value}" for key, value in node.items() if key not in skip and not isinstance(value, dict))


def _factors(cfg: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    """What the evaluation breaks its numbers down by: groups, classes, attack radii."""
    dataset = cfg.get("dataset") or {}
    factors = []
    if dataset.get("sensitive"):
        groups = next((part.names() for part in breakdowns(metrics) if part.kind == "group"), [])
        factors.append(f"sensitive attribute: {_text(dataset['sensitive'])} (groups: {', '.join(groups)})")
    kinds = [part.kind for part in breakdowns(metrics)]
    if kinds:
        factors.append(f"metrics broken down by: {', '.join(kinds)}")
    if robust_by_eps(metrics):
        norm = (cfg.get("eval") or {}).get("robust", {}).get("norm", "")
        factors.append(f"attack radii (ε, {_text(norm)}): {', '.join(robust_by_eps(metrics))}")
    return factors


def _split_facts(dataset: Mapping[str, Any], examples: Any) -> str:
    """``test_fraction 0.2, limit 200, 200 examples``: the parts the run has (no limit: none
    printed, rather than an empty ``limit ,``)."""
    facts = [f"test_fraction {format_value(dataset.get('test_fraction', 'the dataset default'))}"]
    if dataset.get("limit") is not None:
        facts.append(f"limit {format_value(dataset['limit'])}")
    if isinstance(examples, (int, float)):
        facts.append(f"{int(examples)} examples")
    return ", ".join(facts)


def _selection(trainer: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """Which epoch's weights were tested, as trainer.select decided: with ``last`` there
    is no model selection, so the card must not claim one."""
    epoch = metrics.get(keys.train("selected_epoch"))
    at = f"epoch {epoch} of {metrics.get(keys.train('epochs_run'), '?')}" if epoch is not None else "the chosen epoch"
    if trainer.get("select") == "last":
        return f"the last epoch's weights are tested ({at}; trainer.select=last, no model selection)"
    stopping = trainer.get("early_stopping") or {}
    monitor = stopping.get("monitor", "the monitored metric")
    return f"model selected on the validation split: the epoch with the best {monitor} ({at})"


def _quantitative(metrics: Mapping[str, Any]) -> list[Block]:
    overall = [[key, metrics[key]] for key in OVERALL if key in metrics]
    parts: list[Block] = [Heading("Overall"), Table(["metric", "value"], overall)]
    for part in breakdowns(metrics):
        header = [part.kind, "accuracy", *(f"robust accuracy ε={eps}" for eps in part.robust)]
        parts += [Heading(f"By {part.kind}"), Table(header, _clean_and_robust_rows(part))]
    gaps = fairness_gaps(metrics)
    if gaps:
        parts += [Heading("Fairness"), _key_values(gaps)]
    by_eps = robust_by_eps(metrics)
    if by_eps:
        rate = metrics.get(degenerate.MAJORITY_RATE, "")  # a robust accuracy near it is no robustness
        worst = _worst_group(metrics, by_eps)
        rows = [[eps, value, rate, worst.get(eps, "")] for eps, value in by_eps.items()]
        header = ["ε", "robust accuracy", "majority rate", "worst-group robust accuracy"]
        parts += [Heading("Robustness"), Table(header, rows)]
    quality = explain_metrics(metrics)
    if quality:
        names = list(dict.fromkeys(name for values in quality.values() for name in values))
        rows = [[method, *(values.get(name, "") for name in names)] for method, values in quality.items()]
        parts += [Heading("Explanation quality"), Table(["method", *names], rows)]
    return parts


def _objective(regularizers: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[Block]:
    """The loss terms and their weights (from the config's ``regularizer`` node), and the
    trainable fraction of the parameters."""
    rows: list[list[Any]] = [["task (cross-entropy)", 1.0, ""]]
    for name, node in regularizers.items():
        node = node or {}
        rows.append([name, node.get("weight", "— (not a loss term)"), _options(node, ("weight",))])
    parts: list[Block] = [Table(["term", "weight", "options"], rows)]
    fraction = metrics.get(keys.params("trainable_fraction"))
    if fraction is not None:
        parts.append(Paragraph(f"Trainable fraction of the parameters: {format_value(fraction)}."))
    return parts
