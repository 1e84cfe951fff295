"""Training time per epoch of each objective configuration, side by side in one run.

Every configuration trains the same model (same initial weights) on the same data through
dq's own loop (dq.engine.loop.fit); only the objective differs. The time is the loop's
``time/train_epoch_s`` (the batches, without the validation pass). Rounds alternate
(clean, pgd, trades, ..., clean, pgd, ...) so drift in machine speed hits all alike.

    python scripts/bench_objective.py              # decoy_mnist (1,000 train), class groups, cnn
    python scripts/bench_objective.py dataset.limit=null --epochs 2
    python scripts/bench_objective.py dataset=digits --only clean pgd trades

The default data, decoy_mnist with ``dataset.group=label``, has what every term needs: an
annotation mask (attribution) and groups (fairness).

Targets: PGD-k training ≤ 1.1 × (k + 1) × clean (k attack steps, each a forward and an
input-gradient backward pass, plus the training pass on the adversarial batch); the
adversarial, attribution and fairness terms at weight 0 equal to clean within noise (a
weight-0 term is not built at all).

Other terms: add an entry to CONFIGURATIONS (a name and the Hydra overrides that select
it, e.g. ``"attribution": ["regularizer=[attribution]"]``) and, if it has a target,
a line in ``targets``.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from hydra import compose, initialize_config_dir

from dq import data, models
from dq.config import config_dir
from dq.data_records import Splits
from dq.device import resolve_device, seed_everything, set_threads
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer, build_scheduler
from dq.objectives.registry import build_objective
from dq.spec import RunSpec, register_schemas, to_spec

# name -> Hydra overrides (added to the command line's) that select the objective.
CONFIGURATIONS: dict[str, list[str]] = {
    "clean": [],
    "pgd": ["regularizer=[adversarial]", "regularizer.adversarial.method=pgd"],
    "trades": [
        "regularizer=[adversarial]",
        "regularizer.adversarial.method=trades",
        "regularizer.adversarial.weight=6",
    ],
    "adversarial weight 0": ["regularizer=[adversarial]", "regularizer.adversarial.weight=0"],
    "attribution": ["regularizer=[attribution]", "regularizer.attribution.weight=1"],
    "attribution weight 0": ["regularizer=[attribution]", "regularizer.attribution.weight=0"],
    "fairness": ["regularizer=[fairness]"],
    "fairness weight 0": ["regularizer=[fairness]", "regularizer.fairness.weight=0"],
}


def compose_spec(overrides: list[str]) -> RunSpec:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return to_spec(compose("config", overrides=overrides))


def epoch_times(spec: RunSpec, splits: Splits, initial: dict, device: torch.device, epochs: int) -> list[float]:
    """Seconds per training epoch of ``spec``'s objective, from ``initial`` weights."""
    spec.trainer.epochs = epochs
    spec.trainer.early_stopping.enabled = False
    spec.trainer.progress = False
    model = models.build(spec.model, splits.meta).to(device)
    model.load_state_dict(initial)
    objective = build_objective(spec.regularizer, splits.meta)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    scheduler = build_scheduler(spec.scheduler, optimizer, epochs)
    settings = FitSettings(spec.trainer, device, spec.seed)
    result = fit(model, objective, splits, optimizer=optimizer, scheduler=scheduler, settings=settings)
    return [record["time/train_epoch_s"] for record in result.history]


def targets(specs: dict[str, RunSpec], median: dict[str, float]) -> dict[str, tuple[float, float, str]]:
    """name -> (measured ratio, bound, what the bound is), for the configurations that have one."""
    out: dict[str, tuple[float, float, str]] = {}
    clean = median.get("clean")
    if clean is None:
        return out
    for name, spec in specs.items():
        if name == "clean" or not spec.regularizer:
            continue
        ratio = median[name] / clean
        if all(getattr(term, "weight", 1.0) == 0 for term in spec.regularizer.values()):
            out[name] = (ratio, 1.1, "equal to clean (10% noise allowance)")
            continue
        adversarial = spec.regularizer.get("adversarial")
        if adversarial is not None and str(adversarial.method) == "pgd":
            k = adversarial.steps
            out[name] = (ratio, 1.1 * (k + 1), f"<= 1.1 x (k+1), k={k}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every configuration")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGURATIONS), help="time these configurations only")
    args = parser.parse_args()

    register_schemas()
    base = [
        "dataset=decoy_mnist",
        "dataset.group=label",
        "dataset.limit=1000",
        "model=cnn",
        "trainer.progress=false",
        *args.overrides,
    ]
    names = args.only or list(CONFIGURATIONS)
    if "clean" not in names:
        names = ["clean", *names]
    specs = {name: compose_spec([*base, *CONFIGURATIONS[name]]) for name in names}
    first = specs["clean"]
    set_threads(first.trainer.num_threads)
    device = resolve_device(str(first.trainer.device))
    splits = data.build(first.dataset, first.seed)
    seed_everything(first.seed)
    initial = models.build(first.model, splits.meta).state_dict()

    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:  # a fresh spec each time: epoch_times sets its trainer fields
            spec = compose_spec([*base, *CONFIGURATIONS[name]])
            times[name] += epoch_times(spec, splits, initial, device, args.epochs)

    median = {name: statistics.median(values) for name, values in times.items()}
    bounds = targets(specs, median)
    print(
        f"data {splits.meta.name}: {len(splits.train)} train examples, model {first.model.name}, "
        f"optimizer {first.optimizer.name}, batch {first.trainer.batch_size}, device {device}, "
        f"threads {torch.get_num_threads()}; {args.rounds} rounds x {args.epochs} epochs, median s/epoch"
    )
    for name in names:
        line = f"  {name:22s} {median[name]:7.3f} s   x{median[name] / median['clean']:6.2f} clean"
        if name in bounds:
            ratio, bound, what = bounds[name]
            line += f"   target {what}: {ratio:.2f} vs {bound:.2f} -> {'ok' if ratio <= bound else 'OVER'}"
            if "k=" in what:
                k = specs[name].regularizer["adversarial"].steps
                line += f"  (ratio / (k+1) = {ratio / (k + 1):.3f})"
        print(line)


if __name__ == "__main__":
    main()
