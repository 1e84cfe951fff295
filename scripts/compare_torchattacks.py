"""PGD robust accuracy of one model under dq's attack and under torchattacks.PGD, side by side.

Trains a small digits CNN with dq (or takes a finished run with ``--run``), then attacks
its test split with the same ε, steps and step size (L∞, random start, inputs clamped
to [0, 1]) with dq.attacks.pgd (through dq.metrics.robustness), torchattacks.PGD and,
for reference, captum.robust.PGD; prints each robust accuracy, the time each attack took,
and dq − torchattacks in points (target: within 1 point).

    python scripts/compare_torchattacks.py                                  # natural CNN
    python scripts/compare_torchattacks.py regularizer=[adversarial] --epochs 15
    python scripts/compare_torchattacks.py --run outputs/adv_digits/<timestamp>

torchattacks is not a dq dependency: ``pip install torchattacks`` to run this.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from dq import data, load_run, models
from dq.attacks import eval_mode
from dq.config import config_dir
from dq.config.eval import RobustEvalConfig
from dq.data_records import Split
from dq.device import resolve_device, seed_everything, set_threads
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer, build_scheduler
from dq.inference import predict_logits
from dq.metrics.robustness import robust_predictions
from dq.objectives.registry import build_objective
from dq.spec import register_schemas, to_spec

try:
    import torchattacks
except ImportError:
    sys.exit("compare_torchattacks.py needs torchattacks, which dq does not depend on: pip install torchattacks")


def trained_model(overrides: list[str], epochs: int):
    """A model trained by dq's loop on ``overrides`` (default digits, CNN), and its data."""
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=digits", "model=cnn", f"trainer.epochs={epochs}", *overrides])
    spec = to_spec(cfg)
    set_threads(spec.trainer.num_threads)
    device = resolve_device(str(spec.trainer.device))
    splits = data.build(spec.dataset, spec.seed)
    seed_everything(spec.seed)
    model = models.build(spec.model, splits.meta)
    objective = build_objective(spec.regularizer, splits.meta)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    scheduler = build_scheduler(spec.scheduler, optimizer, spec.trainer.epochs)
    settings = FitSettings(spec.trainer, device, spec.seed)
    result = fit(model, objective, splits, optimizer=optimizer, scheduler=scheduler, settings=settings)
    model.load_state_dict(result.best_state)
    return model.eval(), splits, device, spec


def timed(attack, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, float]:
    """Adversarial inputs for all of ``x`` batch by batch, and the seconds it took."""
    start = time.perf_counter()
    out = torch.cat([attack(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)])
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the model to train, e.g. seed=1")
    parser.add_argument("--run", help="a finished dq run directory to take the model from instead of training")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=None, help="step size (default 2.5 * eps / steps)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="repeat each attack; the median time is printed")
    args = parser.parse_args()

    if args.run:
        run = load_run(args.run)
        set_threads(run.spec.trainer.num_threads)
        model, splits, device, what = run.model, run.splits, torch.device("cpu"), f"run {args.run}"
    else:
        model, splits, device, spec = trained_model(args.overrides, args.epochs)
        what = f"{spec.model.name} trained {args.epochs} epochs on {splits.meta.name} ({' '.join(args.overrides) or 'natural'})"
    if splits.meta.valid_range != (0.0, 1.0):
        sys.exit(f"torchattacks clamps to [0, 1]; dataset {splits.meta.name} has valid range {splits.meta.valid_range}")

    cfg = RobustEvalConfig(eps=[args.eps], steps=args.steps, alpha=args.alpha)
    alpha = cfg.at(args.eps).step_size
    test = splits.test
    x, y = test.x.to(device), test.y.to(device)
    clean = float((predict_logits(model, test, device).argmax(1) == test.y).float().mean())

    calls = iter(range(1_000_000))

    def dq_attack(xb, yb):  # what dq.metrics.robustness runs, on one batch; a fresh random start each call
        part = Split(x=xb, y=yb)
        return robust_predictions(model, part, splits.meta, cfg, args.eps, device, len(yb), seed=next(calls))

    torchattacks_pgd = torchattacks.PGD(model, eps=args.eps, alpha=alpha, steps=args.steps, random_start=True)

    def ta_attack(xb, yb):
        x_adv = torchattacks_pgd(xb, yb)
        with torch.no_grad(), eval_mode(model):
            return model(x_adv).argmax(1).cpu()

    try:
        from captum.robust import PGD as CaptumPGD
    except ImportError:
        CaptumPGD = None
    captum_pgd = None
    if CaptumPGD is not None:
        captum_pgd = CaptumPGD(
            model, loss_func=lambda out, t: F.cross_entropy(out, t, reduction="none"), lower_bound=0.0, upper_bound=1.0
        )

    def captum_attack(xb, yb):
        x_adv = captum_pgd.perturb(xb, args.eps, alpha, args.steps, yb, random_start=True, norm="Linf")
        with torch.no_grad(), eval_mode(model):
            return model(x_adv).argmax(1).cpu()

    attacks = {"dq (dq.attacks.pgd)": dq_attack, "torchattacks.PGD": ta_attack}
    if captum_pgd is not None:
        attacks["captum.robust.PGD"] = captum_attack
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in attacks}
    torch.manual_seed(0)
    for _ in range(args.rounds):  # alternate so drift in machine speed hits all alike
        for name, attack in attacks.items():
            preds, seconds = timed(attack, x, y, args.batch_size)
            results[name][0].append(float((preds == test.y).float().mean()))
            results[name][1].append(seconds)

    print(f"model: {what}; device {device}, threads {torch.get_num_threads()}")
    print(
        f"test split: {len(test)} examples, clean accuracy {100 * clean:.1f}%; "
        f"PGD-{args.steps} L∞ eps={args.eps:g} alpha={alpha:g} random start, clamp [0, 1], "
        f"{args.rounds} rounds (accuracy: mean over rounds; time: median)"
    )
    mean = {name: statistics.mean(acc) for name, (acc, _) in results.items()}
    for name, (acc, seconds) in results.items():
        rounds = ", ".join(f"{100 * a:.1f}" for a in acc)
        print(
            f"  {name:22s} robust accuracy {100 * mean[name]:5.1f}%  ({rounds})   time {statistics.median(seconds):.3f} s"
        )
    diff = 100 * (mean["dq (dq.attacks.pgd)"] - mean["torchattacks.PGD"])
    print(f"dq - torchattacks = {diff:+.1f} points  (target: within 1 point) -> {'ok' if abs(diff) <= 1 else 'FAIL'}")


if __name__ == "__main__":
    main()
