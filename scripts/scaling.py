"""Does the cost grow as it should? Time per epoch against training-set size and PGD steps.

Two sweeps, each run in this process through dq's API (``dq.spec.compose`` +
``dq.runner.train``), one epoch per point, CPU, one torch thread:

- size: the CNN on Fashion-MNIST with ``dataset.limit`` = 1k … 60k training examples;
- pgd_steps: adversarial training (``regularizer=[adversarial]``, PGD, ε = 0.1) with 1 … 20
  steps on a fixed training set.

The epoch time is ``time/train_epoch_s`` from the run's metrics.jsonl (the training pass
only; validation is timed apart). Both should be straight lines: an epoch is
``size / batch_size`` batches of the same cost, and a PGD step is one more forward and
backward pass per batch. A fit ``t = a·x + b`` by least squares, its R², and the points go
to ``<out>.csv`` and ``<out>.png``.

    python scripts/scaling.py                                  # outputs/bench/scaling.{csv,png}
    python scripts/scaling.py --sizes 1000 2000 5000 --steps 1 2 5 --pgd-size 500 --out /tmp/s
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1000, 2000, 5000, 10000, 20000, 60000)
STEPS = (1, 2, 5, 10, 20)
COLUMNS = ("sweep", "x", "train_examples", "pgd_steps", "epoch_s", "fit_slope", "fit_intercept", "fit_r2")
# Everything but the training epoch switched off: no explanations, report, intervals, checkpoints.
QUIET = (
    "model=cnn",
    "trainer.epochs=1",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.checkpoints=false",
    "explain.enabled=false",
    "report.html=false",
    "report.model_card=false",
    "eval.bootstrap=0",
    "logger=[jsonl]",
)


@dataclass(frozen=True)
class Fit:
    """``t = slope·x + intercept`` by least squares, and its coefficient of determination."""

    slope: float
    intercept: float
    r2: float

    @classmethod
    def of(cls, x: Sequence[float], y: Sequence[float]) -> Fit:
        xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        slope, intercept = np.polyfit(xs, ys, 1)
        residual = float(((ys - (slope * xs + intercept)) ** 2).sum())
        total = float(((ys - ys.mean()) ** 2).sum())
        return cls(float(slope), float(intercept), 1.0 - residual / total if total > 0 else 1.0)


def epoch_seconds(overrides: Sequence[str], run_dir: Path) -> float:
    """The training pass of one epoch of the run ``overrides`` describe, in seconds."""
    from rich.console import Console

    from dq.runner import train
    from dq.spec import compose

    cfg = compose([*QUIET, *overrides])
    train(cfg, run_dir, console=Console(quiet=True))
    epoch = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return float(epoch["time/train_epoch_s"])


def full_train_size(dataset: str) -> int:
    """Training examples of ``dataset`` without a limit (``dataset.limit`` caps each split)."""
    from dq import data
    from dq.data.registry import dataset_config

    return len(data.build(dataset_config(dataset), seed=0).train)


def measure(
    dataset: str, sizes: Sequence[int], steps: Sequence[int], pgd_size: int, scratch: Path
) -> list[dict[str, object]]:
    """The rows of both sweeps (a fit per sweep, repeated on its rows)."""
    rows: list[dict[str, object]] = []
    full = full_train_size(dataset)
    plans = [
        ("size", [(min(n, full), [f"dataset={dataset}", f"dataset.limit={n}"], min(n, full), 0) for n in sizes]),
        (
            "pgd_steps",
            [
                (
                    k,
                    [
                        f"dataset={dataset}",
                        f"dataset.limit={pgd_size}",
                        "regularizer=[adversarial]",
                        f"regularizer.adversarial.steps={k}",
                    ],
                    min(pgd_size, full),
                    k,
                )
                for k in steps
            ],
        ),
    ]
    for sweep, points in plans:
        measured = []
        for x, overrides, size, k in points:
            seconds = epoch_seconds(overrides, scratch / f"{sweep}-{x}")
            measured.append({"sweep": sweep, "x": x, "train_examples": size, "pgd_steps": k, "epoch_s": seconds})
            print(f"{sweep}={x}: {seconds:.3f} s per epoch", flush=True)
        if len(measured) >= 2:
            fit = Fit.of([float(r["x"]) for r in measured], [float(r["epoch_s"]) for r in measured])
            for row in measured:
                row.update(fit_slope=fit.slope, fit_intercept=fit.intercept, fit_r2=fit.r2)
        rows += measured
    return rows


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    from dq.rundir.write import atomic_write

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows({key: row.get(key, "") for key in COLUMNS} for row in rows)

    atomic_write(path, write)


def plot(rows: list[dict[str, object]], path: Path) -> None:
    """One panel per sweep: the points and the fitted line, slope and R² in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dq.rundir.write import atomic_write

    labels = {"size": "training examples (Fashion-MNIST, CNN)", "pgd_steps": "PGD steps (adversarial training)"}
    units = {"size": "ms per 1k examples", "pgd_steps": "s per step"}
    scale = {"size": 1000.0 * 1000.0, "pgd_steps": 1.0}
    sweeps = [s for s in labels if any(r["sweep"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.5 * len(sweeps), 4), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps, strict=True):
        mine = [r for r in rows if r["sweep"] == sweep]
        xs = np.array([float(r["x"]) for r in mine])
        ys = np.array([float(r["epoch_s"]) for r in mine])
        ax.plot(xs, ys, "o", label="measured")
        if mine[0].get("fit_slope", "") != "":
            slope, intercept, r2 = (float(mine[0][k]) for k in ("fit_slope", "fit_intercept", "fit_r2"))
            line = np.linspace(0, xs.max(), 50)
            fit_label = f"fit: {slope * scale[sweep]:.3g} {units[sweep]} + {intercept:.2f} s, R² = {r2:.4f}"
            ax.plot(line, slope * line + intercept, "-", label=fit_label)
        ax.set_xlabel(labels[sweep])
        ax.set_ylabel("seconds per epoch (training pass)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "scaling", help="<out>.csv, <out>.png")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--steps", type=int, nargs="*", default=list(STEPS), help="PGD steps")
    parser.add_argument("--pgd-size", type=int, default=1000, help="training examples of the PGD sweep")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="dq-scaling-") as tmp:
        rows = measure(args.dataset, args.sizes, args.steps, args.pgd_size, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = args.out.with_suffix(".csv"), args.out.with_suffix(".png")
    write_csv(rows, csv_path)
    plot(rows, png_path)
    for sweep in ("size", "pgd_steps"):
        fitted = [r for r in rows if r["sweep"] == sweep and r.get("fit_slope", "") != ""]
        if fitted:
            r = fitted[0]
            print(
                f"{sweep}: slope {r['fit_slope']:.4g} s per unit, intercept {r['fit_intercept']:.3f} s, R² {r['fit_r2']:.4f}"
            )
    print(f"wrote {csv_path} and {png_path}")
    return rows


if __name__ == "__main__":
    main()
