"""``dq-baselines RUN_DIR [--bootstrap N]``: the cheap baselines beside a finished run.

Reads the run's saved config, rebuilds its split (same dataset, same seed), loads its
best.pt model and fits, on the train split, three baselines (dq.baselines.fit): an
unconstrained logistic regression, fairlearn's ExponentiatedGradient and fairlearn's
ThresholdOptimizer on the run's own model scores, both under the run's fairness criterion
(``regularizer.fairness.criterion``: dp → demographic parity, eo → equalized odds;
demographic parity when the run has no fairness term). Each is scored on the test split
with dq's metrics and bootstrap intervals (``--bootstrap``, default the run's
``eval.bootstrap``; the same resamples for every row, drawn from the run's seed), beside
the run's own numbers recomputed from best.pt the same way.

Writes RUN_DIR/baselines.json (atomically) and prints a table. Refuses, with one line and
exit 2 and nothing written: a path that is not a completed run, data that is not binary
tabular data with sensitive groups, a negative ``--bootstrap``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from dq import metric_keys as keys
from dq.baselines.fit import (
    CONSTRAINTS,
    Fitted,
    blas_threads,
    exponentiated_gradient,
    logistic_regression,
    require_binary_groups,
    threshold_optimizer,
)
from dq.baselines.scores import prediction_metrics
from dq.device import set_threads
from dq.errors import DQUserError
from dq.inference import predict_logits
from dq.rundir.layout import BASELINES_JSON
from dq.rundir.load import LoadedRun, load_run
from dq.rundir.write import write_json

EXIT_USER_ERROR = 2
USAGE = "dq-baselines RUN_DIR [--bootstrap N]"
SHOWN = (keys.test(keys.ACCURACY), keys.test(keys.DP_DIFF), keys.test(keys.EO_DIFF))


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line (exit 2) like dq's other errors."""

    def error(self, message: str) -> NoReturn:
        print(f"dq-baselines: error: {message}; usage: {USAGE}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def parser() -> argparse.ArgumentParser:
    made = _Parser(
        prog="dq-baselines",
        usage=USAGE,
        description="Fit a logistic regression, ExponentiatedGradient and ThresholdOptimizer on a run's split; "
        "write RUN_DIR/baselines.json beside the run's own numbers.",
    )
    made.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a completed dq-train run on tabular data")
    made.add_argument(
        "--bootstrap", type=int, default=None, metavar="N", help="resamples for the 95%% intervals (default: the run's)"
    )
    return made


def criterion(run: LoadedRun) -> str:
    """The run's fairness criterion as fairlearn names it (demographic parity without one)."""
    fairness = run.cfg.get("regularizer", {}).get("fairness")
    return CONSTRAINTS[str(fairness.criterion)] if fairness is not None else CONSTRAINTS["dp"]


def _row(label: str, method: str, fitted: Fitted, run: LoadedRun, n_boot: int) -> dict[str, Any]:
    metrics = prediction_metrics(run.splits, fitted.pred, n_boot, run.spec.seed)
    metrics[keys.time("fit_s")] = fitted.fit_s
    return {"label": label, "method": method, "metrics": metrics}


def baselines(run: LoadedRun, n_boot: int, say: Any = print) -> dict[str, Any]:
    """The contents of baselines.json for ``run`` (nothing is written here)."""
    require_binary_groups(run.splits, "dq-baselines")
    seed, splits, constraint = run.spec.seed, run.splits, criterion(run)
    short = {"demographic_parity": "DP", "equalized_odds": "EO"}[constraint]
    logits = predict_logits(run.model, splits.test, next(run.model.parameters()).device)
    # The run's own "fit" time is its training time (metrics.json's time/train_s).
    own = Fitted(logits.argmax(dim=1).numpy(), float(run.metrics.get(keys.time("train_s"), float("nan"))))
    rows = {"run": _row("dq run", f"this run's best.pt ({describe(run)})", own, run, n_boot)}
    fits = {
        "logistic_regression": (
            "LogReg",
            "unconstrained scikit-learn LogisticRegression",
            lambda: logistic_regression(splits, seed),
        ),
        "exponentiated_gradient": (
            f"ExpGrad {short}",
            f"fairlearn ExponentiatedGradient({constraint}, eps=0.01) around LogisticRegression",
            lambda: exponentiated_gradient(splits, seed, constraint),
        ),
        "threshold_optimizer": (
            f"ThreshOpt {short}",
            f"fairlearn ThresholdOptimizer({constraint}, accuracy) on this run's P(y=1|x), prefit",
            lambda: threshold_optimizer(run.model, splits, seed, constraint),
        ),
    }
    for name, (label, method, fit) in fits.items():
        say(f"dq-baselines: fitting {method}")
        rows[name] = _row(label, method, fit(), run, n_boot)
    return {
        "run_dir": str(run.run_dir),
        "dataset": splits.meta.name,
        "groups": list(splits.meta.group_names),
        "seed": seed,
        "constraint": constraint,
        "bootstrap": n_boot,
        "fit_split": "train",
        "score_split": "test",
        "examples": {"train": len(splits.train), "test": len(splits.test)},
        "rows": rows,
    }


def describe(run: LoadedRun) -> str:
    """The run's regularizers in a few words: ``fairness dp weight 1.0``."""
    terms = OmegaConf.to_container(run.cfg.get("regularizer") or OmegaConf.create({}), resolve=True)
    assert isinstance(terms, dict)
    parts = [
        " ".join(
            [str(name), *([str(term["criterion"])] if "criterion" in term else []), f"weight {term.get('weight')}"]
        )
        for name, term in terms.items()
    ]
    return ", ".join(parts) or "no regularizer"


def _cell(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "–"
    low, high = metrics.get(keys.ci_low(key)), metrics.get(keys.ci_high(key))
    return f"{value:.3f}" if low is None or high is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def table(result: dict[str, Any]) -> Table:
    examples, resamples = result["examples"]["test"], result["bootstrap"]
    shown = Table(
        title=f"{result['dataset']}, {examples} test examples, 95% intervals from {resamples} resamples",
        title_justify="left",
    )
    for column in ("", "accuracy", "DP gap", "EO gap", "fit s"):
        shown.add_column(column, justify="left" if not column else "right", no_wrap=not column)
    for row in result["rows"].values():
        metrics = row["metrics"]
        shown.add_row(row["label"], *(_cell(metrics, key) for key in SHOWN), f"{metrics[keys.time('fit_s')]:.1f}")
    return shown


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    try:
        if args.bootstrap is not None and args.bootstrap < 0:
            raise DQUserError(f"--bootstrap must be >= 0 (0: no intervals), got {args.bootstrap}")
        run = load_run(args.run_dir)
        n_boot = run.spec.eval.bootstrap if args.bootstrap is None else args.bootstrap
        set_threads(run.spec.trainer.num_threads)
        with blas_threads(run.spec.trainer.num_threads):
            result = baselines(run, n_boot, say=lambda line: print(line, file=sys.stderr))
    except DQUserError as error:
        print(f"dq-baselines: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    path = run.run_dir / BASELINES_JSON
    write_json(path, result)
    console = Console()
    console.print(table(result))
    console.print(str(path), markup=False, highlight=False, soft_wrap=True)
