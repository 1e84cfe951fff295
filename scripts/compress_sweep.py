"""A pruning sweep's numbers against sparsity: accuracy, worst-group accuracy, DP gap and
robust accuracy of the dense model (amount 0) and of each pruned one, mean ± sd over seeds,
as a markdown table on stdout and a figure of four panels.

Each job of ``dq-train -m +experiment=prune_sweep ...`` holds the dense model's ``test/...``
keys and the pruned model's ``compress/test/...`` keys in its metrics.json; the worst group
is the smallest ``group_accuracy/<g>`` of each (the groups: sex on Adult, the classes with
dataset.group=label). Hooker et al.'s question, does the worst group lose more than the
mean, is the last two columns: the drop of each against the dense model of the same seed.

    python scripts/compress_sweep.py outputs/multirun/prune_sweep/<time> --plot prune_adult.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml

PANELS = ("accuracy", "worst-group accuracy", "DP gap", "robust accuracy")


def measures(metrics: dict, prefix: str) -> dict[str, float]:
    """The four panels' numbers of one model (``prefix``: ``""`` dense, ``compress/`` pruned)."""
    groups = [v for k, v in metrics.items() if k.startswith(f"{prefix}test/group_accuracy/") and "/ci_" not in k]
    robust = [v for k, v in metrics.items() if k.startswith(f"{prefix}test/robust_accuracy@") and "/ci_" not in k]
    return {
        "accuracy": metrics[f"{prefix}test/accuracy"],
        "worst-group accuracy": min(groups),
        "DP gap": metrics.get(f"{prefix}test/dp_diff", float("nan")),
        "robust accuracy": robust[0] if robust else float("nan"),
    }


def completed(job: Path) -> bool:
    """A job whose run.json says completed (a running job's metrics.json lacks compress/...)."""
    run_json = job / "run.json"
    return run_json.exists() and json.loads(run_json.read_text()).get("status") == "completed"


def jobs(sweeps: list[Path]) -> dict[float, list[dict[str, float]]]:
    """amount → one record per seed (amount 0: the dense models, one per job's seed), over
    every completed job of ``sweeps`` (one sweep split in parts, say)."""
    by_amount: dict[float, list[dict[str, float]]] = defaultdict(list)
    dense: dict[int, dict[str, float]] = {}
    pruned: dict[tuple[float, int], dict[str, float]] = {}
    done = [p for sweep in sweeps for p in sorted(sweep.iterdir()) if p.name.isdigit() and completed(p)]
    for job in done:
        metrics = json.loads((job / "metrics.json").read_text())
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        before, after = measures(metrics, ""), measures(metrics, "compress/")
        after["mean drop"] = before["accuracy"] - after["accuracy"]
        after["worst-group drop"] = before["worst-group accuracy"] - after["worst-group accuracy"]
        after["sparsity"] = metrics["compress/sparsity"]
        pruned[(float(config["compress"]["amount"]), int(config["seed"]))] = after  # a job run twice counts once
        dense[int(config["seed"])] = before  # the same dense model for every amount of a seed
    for (amount, _), after in sorted(pruned.items()):
        by_amount[amount].append(after)
    by_amount[0.0] = list(dense.values())
    return dict(sorted(by_amount.items()))


def cell(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(by_amount: dict[float, list[dict[str, float]]]) -> str:
    columns = [*PANELS, "mean drop", "worst-group drop"]
    lines = ["| amount | n | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for amount, records in by_amount.items():
        cells = [cell([r[c] for r in records]) if c in records[0] else "–" for c in columns]
        lines.append(f"| {amount:g} | {len(records)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(by_amount: dict[float, list[dict[str, float]]], title: str, path: Path) -> None:
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4))
    amounts = list(by_amount)
    for axis, panel in zip(axes, PANELS, strict=True):
        means = [statistics.mean(r[panel] for r in by_amount[a]) for a in amounts]
        sds = [statistics.stdev([r[panel] for r in by_amount[a]]) if len(by_amount[a]) > 1 else 0 for a in amounts]
        axis.errorbar(amounts, means, yerr=sds, marker="o", capsize=3)
        axis.set_xlabel("sparsity (compress.amount; 0 = dense)")
        axis.set_title(panel)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweeps", type=Path, nargs="+", help="prune sweep directories (outputs/multirun/<experiment>/<time>)"
    )
    parser.add_argument("--plot", type=Path, help="where to write the figure (png)")
    args = parser.parse_args()
    by_amount = jobs(args.sweeps)
    print(table(by_amount))
    if args.plot:
        plot(by_amount, args.sweeps[0].parent.name, args.plot)
        print(args.plot)


if __name__ == "__main__":
    main()
