"""Cost and robustness of fast adversarial training (fgsm_rs and n_fgsm, with their
overfitting guard) against PGD-10 training, per dataset.

Cost: process CPU time of ``dq.engine.fit`` relative to clean training. Wall time on a
shared machine swings with other people's jobs; the CPU time this process spends (one
torch thread) does far less, so the ratios are the cost to compare. Rounds alternate
(clean, fgsm_rs, fgsm_rs without guard, pgd, clean, ...) with the same initial weights, so
drift hits all alike (``--methods`` picks some). Each method trains ``--epochs`` epochs including validation and the
term's ``end_epoch`` (``val/robust_accuracy``, which the guard watches), as ``time/train_s``
counts them; keep ``--epochs`` a multiple of the one-step methods' ``val_every`` (3) so
their robust validation is paid as often as in a long run.

Robustness: fgsm_rs, n_fgsm and PGD-10 train ``--robust-epochs`` epochs per seed of
``--seeds`` (the same seeds for all: robust accuracy on 2,000 test images swings by about 2
points between seeds), selecting the epoch of best ``val/robust_accuracy`` (as the robust
presets do); the model each run keeps (the selected epoch's weights, which best.pt,
metrics.json and the report get) and the last epoch's are scored under PGD-20 at the
training ε on the test split. Each run prints a line as it ends; the table gives mean ± std
over the seeds, the gap to PGD-10 taken seed by seed.

    python scripts/bench_fgsm.py                                    # digits and fashion_mnist (2,000 images)
    python scripts/bench_fgsm.py --datasets digits --rounds 3
    python scripts/bench_fgsm.py --datasets fashion_mnist --rounds 0 --seeds 0 1 --methods n_fgsm pgd-10
    python scripts/bench_fgsm.py scheduler=cyclic trainer.select=last --rounds 0   # the fast-AT papers' protocol

Hydra overrides (before the options) apply to every run of every method alike: the fast
adversarial training papers (Wong et al. 2020, de Jorge et al. 2022) train on a one-cycle
learning rate and keep the final model, which ``scheduler=cyclic trainer.select=last``
asks for (the guard still rolls a collapse back); a line ends with the guard's reason when
it fired.

Targets (issue 25): fgsm_rs and n_fgsm with their guard ≤ 2.5 × clean; their selected
epoch's robust accuracy within 3 points of PGD-10's.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from hydra import compose, initialize_config_dir

from dq import data, models
from dq import metric_keys as keys
from dq.config import config_dir
from dq.data_records import Splits
from dq.device import seed_everything, set_threads
from dq.engine.callbacks import FitResult
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer, build_scheduler
from dq.metrics.robustness import robust_metrics
from dq.objectives.registry import build_objective
from dq.spec import RunSpec, register_schemas, to_spec

DATASETS = {"digits": ["dataset=digits"], "fashion_mnist": ["dataset=fashion_mnist", "dataset.limit=2000"]}
EPS = 0.1
METHODS = {
    # no adversarial term, no val/robust_accuracy: natural training selects on clean val loss
    "clean": [
        "regularizer.adversarial.weight=0",
        "trainer.early_stopping.monitor=val/loss",
        "trainer.early_stopping.mode=min",
    ],
    "fgsm_rs": ["regularizer.adversarial.method=fgsm_rs"],
    "fgsm_rs, no guard": ["regularizer.adversarial.method=fgsm_rs", "regularizer.adversarial.co_guard=false"],
    "n_fgsm": ["regularizer.adversarial.method=n_fgsm"],
    "pgd-10": ["regularizer.adversarial.method=pgd"],
}
ROBUST = ["fgsm_rs", "n_fgsm", "pgd-10"]
COMMON = ["model=cnn", "regularizer=[adversarial]", f"regularizer.adversarial.eps={EPS}", f"eval.robust.eps=[{EPS}]"]
COMMON += ["trainer.progress=false", "trainer.early_stopping.enabled=false"]
SELECT_ROBUST = ["trainer.early_stopping.monitor=val/robust_accuracy", "trainer.early_stopping.mode=max"]


def composed(overrides: list[str]) -> RunSpec:
    """The run spec dq-train would compose from ``overrides``."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return to_spec(compose("config", overrides=overrides))


def train(overrides: list[str], seed: int = 0) -> tuple[float, FitResult, torch.nn.Module, RunSpec, Splits]:
    """Process CPU seconds of ``fit`` on the composed run, its result, the trained model, spec and splits."""
    spec = composed(overrides)
    splits = data.build(spec.dataset, seed)
    seed_everything(seed)
    model = models.build(spec.model, splits.meta)
    objective = build_objective(spec.regularizer, splits.meta)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    scheduler = build_scheduler(spec.scheduler, optimizer, spec.trainer.epochs)  # scheduler=cyclic applies
    settings = FitSettings(spec.trainer, torch.device("cpu"), seed)
    started = time.process_time()
    result = fit(model, objective, splits, optimizer=optimizer, scheduler=scheduler, settings=settings)
    return time.process_time() - started, result, model, spec, splits


def robust_accuracy(model: torch.nn.Module, spec: RunSpec, splits: Splits) -> float:
    """PGD-20 accuracy at ε on the test split, as ``test/robust_accuracy@<eps>``."""
    metrics = robust_metrics(
        model, splits.test, splits.meta, spec.eval.robust, torch.device("cpu"), spec.trainer.eval_batch_size
    )
    return metrics[keys.robust_accuracy(f"{EPS:g}")]


def cost(base: list[str], methods: list[str], epochs: int, rounds: int) -> dict[str, float]:
    """Median CPU seconds per method over ``rounds`` alternating rounds of ``epochs`` epochs."""
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name in methods:
            seconds[name].append(train([*base, *METHODS[name], f"trainer.epochs={epochs}"])[0])
    return {name: statistics.median(values) for name, values in seconds.items()}


def robustness(base: list[str], methods: list[str], epochs: int, seed: int) -> dict[str, tuple[int, float, float]]:
    """Per robust method, one seed: the selected epoch, its PGD-20 test accuracy and the last epoch's."""
    out = {}
    for name in methods:
        _, result, model, spec, splits = train(
            [*base, *METHODS[name], *SELECT_ROBUST, f"trainer.epochs={epochs}", f"seed={seed}"], seed
        )
        last = robust_accuracy(model, spec, splits)
        model.load_state_dict(result.best_state)  # what the run keeps, as dq.runner does
        out[name] = (result.selected_epoch, robust_accuracy(model, spec, splits), last)
        stopped = f" ({result.stop_request.reason})" if result.stop_request else ""  # the guard fired
        print(
            f"  seed {seed} {name}: epoch {out[name][0]}, selected {out[name][1]:.4f}, last {last:.4f}{stopped}",
            flush=True,
        )
    return out


def mean_std(values: list[float]) -> str:
    """``mean ± std`` in percent (std over the seeds; 0 for one seed)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every run")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each cost run")
    parser.add_argument("--rounds", type=int, default=2, help="cost rounds (0: no cost table)")
    parser.add_argument("--robust-epochs", type=int, default=9, help="epochs of each robustness run (0: none)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the robustness runs")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="methods to run")
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("dq.objectives.adversarial").setLevel(logging.INFO)  # the validation examples attacked
    register_schemas()
    set_threads(1)
    robust_methods = [name for name in ROBUST if name in args.methods]
    for dataset in args.datasets:
        base = [*COMMON, *DATASETS[dataset], *args.overrides]
        data_name = " ".join(DATASETS[dataset])
        if args.rounds:
            medians = cost(base, args.methods, args.epochs, args.rounds)
            print(f"{data_name}: cost of {args.epochs} epochs, median of {args.rounds} rounds")
            print("| method | CPU s | × clean |\n|---|---|---|")
            for name, median in medians.items():
                ratio = f"{median / medians['clean']:.2f}" if "clean" in medians else "-"
                print(f"| {name} | {median:.2f} | {ratio} |")
        if not args.robust_epochs or not robust_methods:
            continue
        runs = [robustness(base, robust_methods, args.robust_epochs, seed) for seed in args.seeds]
        seeds = "/".join(str(seed) for seed in args.seeds)
        select_last = str(composed(base).trainer.select) == "last"
        kept = "last epoch" if select_last else "epoch of best val/robust_accuracy"
        print(f"{data_name}: {args.robust_epochs} epochs, {kept} kept, seeds {seeds} {' '.join(args.overrides)}")
        print(
            f"| method | kept epochs | PGD-20@{EPS:g} test %, kept | − PGD-10's | last epoch |\n|---|---|---|---|---|"
        )
        for name in robust_methods:
            selected = [run[name][1] for run in runs]
            gap = mean_std([run[name][1] - run["pgd-10"][1] for run in runs]) if "pgd-10" in robust_methods else "-"
            print(
                f"| {name} | {'/'.join(str(run[name][0]) for run in runs)} | {mean_std(selected)} "
                f"| {gap} | {mean_std([run[name][2] for run in runs])} |"
            )


if __name__ == "__main__":
    main()
