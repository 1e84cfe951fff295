"""Cost of fast adversarial training (fgsm_rs, with its overfitting guard) and of PGD-10
training relative to clean training, measured as process CPU time of ``dq.engine.fit``.

Wall time on a shared machine swings with other people's jobs; the CPU time this process
spends (one torch thread) does far less, so the ratios here are the cost to compare.
Rounds alternate (clean, fgsm_rs, fgsm_rs without guard, pgd, clean, ...) with the same
initial weights, so drift hits all alike. Each method trains ``--epochs`` epochs including
validation and the term's ``end_epoch`` (the guard), as ``time/train_s`` counts them.

    python scripts/bench_fgsm.py                                    # digits, cnn, ε = 0.1
    python scripts/bench_fgsm.py dataset=fashion_mnist dataset.limit=2000 --epochs 1

Target (issue 10): fgsm_rs ≤ 2.5 × clean; PGD-10 costs about 10 ×.
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
from dq.objectives.registry import build_objective
from dq.spec import register_schemas, to_spec

METHODS = {
    # no adversarial term, no val/robust_accuracy: natural training selects on clean val loss
    "clean": [
        "regularizer.adversarial.weight=0",
        "trainer.early_stopping.monitor=val/loss",
        "trainer.early_stopping.mode=min",
    ],
    "fgsm_rs": ["regularizer.adversarial.method=fgsm_rs"],
    "fgsm_rs, no guard": ["regularizer.adversarial.method=fgsm_rs", "regularizer.adversarial.co_guard=false"],
    "pgd-10": ["regularizer.adversarial.method=pgd"],
}


def cpu_seconds(overrides: list[str], epochs: int, seed: int) -> float:
    """Process CPU seconds of ``fit`` for ``epochs`` epochs of the composed run."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    spec = to_spec(cfg)
    splits = data.build(spec.dataset, seed)
    seed_everything(seed)
    model = models.build(spec.model, splits.meta)
    objective = build_objective(spec.regularizer, splits.meta)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    device = torch.device("cpu")
    started = time.process_time()
    fit(model, objective, splits, optimizer=optimizer, scheduler=None, settings=FitSettings(spec.trainer, device, seed))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=fashion_mnist dataset.limit=2000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    register_schemas()
    set_threads(1)
    base = ["dataset=digits", "model=cnn", "regularizer=[adversarial]", "regularizer.adversarial.eps=0.1"]
    base += ["trainer.progress=false", "trainer.early_stopping.enabled=false", f"trainer.epochs={args.epochs}"]
    base += args.overrides
    seconds: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(args.rounds):
        for name, extra in METHODS.items():
            seconds[name].append(cpu_seconds([*base, *extra], args.epochs, seed=0))
    clean = statistics.median(seconds["clean"])
    print(f"{' '.join(args.overrides) or 'dataset=digits'}: {args.epochs} epochs, median of {args.rounds} rounds")
    print("| method | CPU s | × clean |")
    print("|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / clean:.2f} |")


if __name__ == "__main__":
    main()
