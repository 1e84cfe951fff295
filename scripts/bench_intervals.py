"""Cost of the bootstrap intervals (``eval.bootstrap``) against the training they follow,
side by side in one process: one epoch of the Adult MLP (``dq.engine.fit``, with its
validation pass) and ``eval.bootstrap`` resamples of that model's test predictions
(dq.metrics.intervals), as process CPU time on one thread.

Rounds alternate (train, intervals, train, ...) so drift in machine speed hits both alike;
the table gives medians and the ratio.

    python scripts/bench_intervals.py                     # Adult in full (15,060 test rows), 200 resamples
    python scripts/bench_intervals.py --boot 1000 dataset.limit=5000

Target (issue 25): 200 resamples cost well under one epoch of a small tabular model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir

from dq import data, models
from dq.config import config_dir
from dq.device import seed_everything, set_threads
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer
from dq.inference import predict_logits
from dq.metrics.intervals import group_intervals
from dq.objectives.registry import build_objective
from dq.spec import register_schemas, to_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset.limit=5000")
    parser.add_argument("--boot", type=int, default=200, help="resamples (eval.bootstrap)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    register_schemas()
    set_threads(1)
    overrides = ["dataset=adult", "model=mlp", "trainer.epochs=1", "trainer.progress=false", *args.overrides]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        spec = to_spec(compose("config", overrides=overrides))
    splits = data.build(spec.dataset, spec.seed)
    device = torch.device("cpu")
    seconds: dict[str, list[float]] = {"train, 1 epoch": [], f"intervals, {args.boot} resamples": []}
    for _ in range(args.rounds):
        seed_everything(spec.seed)
        model = models.build(spec.model, splits.meta)
        objective = build_objective(spec.regularizer, splits.meta)
        optimizer = build_optimizer(spec.optimizer, model.parameters())
        started = time.process_time()
        fit(
            model, objective, splits, optimizer=optimizer, scheduler=None, settings=FitSettings(spec.trainer, device, 0)
        )
        seconds["train, 1 epoch"].append(time.process_time() - started)
        pred = predict_logits(model, splits.test, device, 512).argmax(1).numpy()
        y, group, meta = splits.test.y.numpy(), splits.test.group.numpy(), splits.meta
        started = time.process_time()
        group_intervals(y, pred, group, meta.group_names, meta.num_classes, args.boot, spec.seed)
        seconds[f"intervals, {args.boot} resamples"].append(time.process_time() - started)
    train = statistics.median(seconds["train, 1 epoch"])
    print(f"adult ({len(splits.train)} train, {len(splits.test)} test rows), median of {args.rounds} rounds, 1 thread")
    print("| step | CPU s | × 1 training epoch |")
    print("|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / train:.2f} |")


if __name__ == "__main__":
    main()
