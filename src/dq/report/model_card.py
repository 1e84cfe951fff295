"""``model_card.md`` for one run, after Mitchell et al. 2019, "Model Cards for Model
Reporting" (FAT* 2019): model details, intended use, factors, metrics, evaluation and
training data, quantitative analyses (overall and by group), ethical considerations,
caveats and recommendations; plus what dq measures beyond them (fairness, robustness,
explanation quality, the objective's terms and weights, the trainable fraction).

Everything comes from the run directory (config, run.json, metrics.json); caveats come
from ``dq.report.caveats``' rules, whose thresholds the card states.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dq.errors import printable
from dq.report import degenerate
from dq.report.breakdown import breakdowns, explain_metrics, fairness_gaps, robust_by_eps
from dq.report.caveats import DEFAULT_THRESHOLDS, Thresholds, caveats
from dq.report.collect import RunResult
from dq.report.page import format_value
from dq.rundir.write import write_text

MODEL_CARD = "model_card.md"
SECTIONS = (
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


def md(value: Any) -> str:
    """``value`` as one line of Markdown text: ``|``, ``<``, ``>`` and backslashes escaped,
    newlines folded, so a config string cannot break a table or inject markup."""
    text = format_value(value) if not isinstance(value, str) else value
    text = printable(" ".join(text.split("\n")))
    for char in ("\\", "|", "<", ">", "`"):
        text = text.replace(char, "\\" + char)
    return text


def md_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(md(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _options(node: Mapping[str, Any], skip: Sequence[str] = ()) -> str:
    return ", ".join(f"{key}={value}" for key, value in node.items() if key not in skip and not isinstance(value, dict))


def model_card(run: RunResult, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> str:
    """The card's Markdown for a completed run."""
    cfg, metrics, info = run.config(), run.metrics, run.info
    dataset, model = cfg.get("dataset") or {}, cfg.get("model") or {}
    trainer, optimizer = cfg.get("trainer") or {}, cfg.get("optimizer") or {}
    regularizers: Mapping[str, Any] = cfg.get("regularizer") or {}
    parts = [f"# Model card: {md(cfg.get('experiment_name', 'run'))} · {md(run.run_dir.name)}\n"]

    git = info.get("git") or {}
    details = [
        ["model", f"{model.get('name', '?')} ({_options(model, ('name',))})"],
        [
            "parameters",
            f"{metrics.get('params/total', '?')} total, {metrics.get('params/trainable', '?')} trainable "
            f"(trainable fraction {format_value(metrics.get('params/trainable_fraction', ''))})",
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
    parts += ["## Model details\n", md_table(["", ""], details) + "\n"]

    parts += [
        "## Intended use\n",
        f"A research model from dq's {md(cfg.get('experiment_name', ''))} experiment, trained to measure the decision "
        f"quality of its {md(model.get('name', ''))} classifier on {md(dataset.get('name', ''))}: accuracy together with "
        "fairness, robustness, explanation quality and parameter cost. It is not meant for decisions about people; "
        "its numbers describe this run's data split and seed only.\n",
    ]

    kinds = [part.kind for part in breakdowns(metrics)]
    factors = []
    if dataset.get("sensitive"):
        factors.append(
            f"sensitive attribute: {md(dataset['sensitive'])} (groups: {md(', '.join(_group_names(metrics)))})"
        )
    if kinds:
        factors.append(f"metrics broken down by: {md(', '.join(kinds))}")
    if robust_by_eps(metrics):
        factors.append(
            f"attack radii (ε, {md((cfg.get('eval') or {}).get('robust', {}).get('norm', ''))}): "
            f"{md(', '.join(robust_by_eps(metrics)))}"
        )
    parts += ["## Factors\n", _bullets(factors or ["no groups or attacks in this run's evaluation"])]

    parts += [
        "## Metrics\n",
        "Accuracy, loss and expected calibration error on the test split; accuracy per group; the demographic-parity "
        "and equalized-odds differences (fairlearn) between groups; robust accuracy under a PGD attack at each ε; "
        "explanation quality per attribution method (infidelity, sensitivity, randomization_rho, sparseness). "
        "The caveats below come from these rules:\n",
        _bullets([*degenerate.RULES, *thresholds.describe()]),
    ]

    examples = metrics.get("test/examples")
    parts += [
        "## Evaluation data\n",
        f"The test split of {md(dataset.get('name', '?'))} ({md(_split_facts(dataset, examples))}), "
        "never seen in training or model selection.\n",
        "## Training data\n",
        f"The training split of the same dataset ({md(_options(dataset, ('name',)))}); {md(trainer.get('epochs', '?'))} epochs, "
        f"batch size {md(trainer.get('batch_size', '?'))}, optimizer {md(optimizer.get('name', '?'))} "
        f"({md(_options(optimizer, ('name',)))}); {md(_selection(trainer, metrics))}.\n",
    ]
    parts += ["## Quantitative analyses\n", *_quantitative(metrics)]
    parts += ["## Objective\n", _objective(regularizers, metrics)]

    ethics = [
        "The groups measured are those the dataset records; other groups and intersections may fare worse.",
        "Fairness gaps computed on one test split with one seed move between seeds: compare sweeps, not single runs.",
    ]
    if dataset.get("sensitive") and dataset.get("include_sensitive") is False:
        ethics.append("The sensitive attribute is withheld from the model's inputs, but proxies of it may remain.")
    parts += ["## Ethical considerations\n", _bullets(ethics)]

    found = degenerate.caveat_lines(metrics) + caveats(metrics, thresholds)
    parts += [
        "## Caveats and recommendations\n",
        _bullets(found) if found else "None of the rules in Metrics fired for this run.\n",
    ]
    return "\n".join(parts)


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
    epoch = metrics.get("train/selected_epoch")
    at = f"epoch {epoch} of {metrics.get('train/epochs_run', '?')}" if epoch is not None else "the chosen epoch"
    if trainer.get("select") == "last":
        return f"the last epoch's weights are tested ({at}; trainer.select=last, no model selection)"
    stopping = trainer.get("early_stopping") or {}
    monitor = stopping.get("monitor", "the monitored metric")
    return f"model selected on the validation split: the epoch with the best {monitor} ({at})"


def _group_names(metrics: Mapping[str, Any]) -> list[str]:
    for part in breakdowns(metrics):
        if part.kind == "group":
            return part.names()
    return []


def _bullets(lines: Iterable[str]) -> str:
    return "".join(f"- {md(line)}\n" for line in lines)


def _quantitative(metrics: Mapping[str, Any]) -> list[str]:
    overall = [
        [key, metrics[key]]
        for key in (
            "test/accuracy",
            degenerate.MAJORITY_RATE,
            degenerate.TOP_CLASS_SHARE,
            "test/loss",
            "test/ece",
            "test/examples",
        )
        if key in metrics
    ]
    parts = ["### Overall\n", md_table(["metric", "value"], overall) + "\n"]
    for part in breakdowns(metrics):
        eps_list = list(part.robust)
        header = [part.kind, "accuracy", *(f"robust accuracy ε={eps}" for eps in eps_list)]
        rows = [
            [name, part.clean.get(name, ""), *(part.robust[eps].get(name, "") for eps in eps_list)]
            for name in part.names()
        ]
        parts += [f"### By {part.kind}\n", md_table(header, rows) + "\n"]
    gaps = fairness_gaps(metrics)
    if gaps:
        parts += ["### Fairness\n", md_table(["metric", "value"], gaps.items()) + "\n"]
    by_eps = robust_by_eps(metrics)
    if by_eps:
        rate = metrics.get(degenerate.MAJORITY_RATE, "")  # a robust accuracy near it is no robustness
        rows = [
            [eps, value, rate, metrics.get(f"test/worst_group_robust_accuracy@{eps}", "")]
            for eps, value in by_eps.items()
        ]
        header = ["ε", "robust accuracy", "majority rate", "worst-group robust accuracy"]
        parts += ["### Robustness\n", md_table(header, rows) + "\n"]
    quality = explain_metrics(metrics)
    if quality:
        names = list(dict.fromkeys(name for values in quality.values() for name in values))
        rows = [[method, *(values.get(name, "") for name in names)] for method, values in quality.items()]
        parts += ["### Explanation quality\n", md_table(["method", *names], rows) + "\n"]
    return parts


def _objective(regularizers: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """The loss terms and their weights (from the config's ``regularizer`` node)."""
    rows = [["task (cross-entropy)", 1.0, ""]]
    for name, node in regularizers.items():
        node = node or {}
        weight = node.get("weight", "— (not a loss term)")
        rows.append([name, weight, _options(node, ("weight",))])
    text = md_table(["term", "weight", "options"], rows) + "\n"
    fraction = metrics.get("params/trainable_fraction")
    if fraction is not None:
        text += f"\nTrainable fraction of the parameters: {md(format_value(fraction))}.\n"
    return text


def write_model_card(run: RunResult, out_path: Path, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Path:
    """Write ``model_card(run)`` atomically to ``out_path`` and return it."""
    write_text(Path(out_path), model_card(run, thresholds))
    return Path(out_path)
