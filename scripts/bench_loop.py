"""Epoch time of dq's engine against a plain hand-written PyTorch loop, side by side.

Both train the same model (same initial weights) on the same in-memory data with the
same optimizer and batch size, and both evaluate on the validation split every epoch,
which is what a hand-written loop would do too. dq additionally runs its objective,
writes metrics.jsonl, last.pt/best.pt and drives the rich progress bar. Rounds
alternate (plain, dq, plain, dq, ...) so drift in machine speed hits both alike.

    python scripts/bench_loop.py                       # mnist5k, cnn, adam
    python scripts/bench_loop.py dataset=digits model=mlp --epochs 5 --rounds 3

Target: dq ≤ 1.05 × the plain loop per epoch.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from rich.console import Console

from dq import data, models
from dq.config import config_dir
from dq.console import RichProgress
from dq.device import resolve_device, seed_everything, set_threads
from dq.engine.callbacks import ShowProgress
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer, build_scheduler
from dq.objectives.base import Objective
from dq.spec import register_schemas, to_spec


def plain_epochs(model, spec, splits, device, epochs: int, seed: int) -> list[float]:
    """The loop a researcher writes by hand: shuffle, forward, loss, backward, step, validate."""
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    x, y = splits.train.x.to(device), splits.train.y.to(device)
    val_x, val_y = splits.val.x.to(device), splits.val.y.to(device)
    generator = torch.Generator().manual_seed(seed)
    batch_size = spec.trainer.batch_size
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(y), generator=generator).to(device)
        for i in range(0, len(order), batch_size):
            index = order[i : i + batch_size]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(val_x[i : i + 512]).argmax(1) == val_y[i : i + 512]).sum().item()
                for i in range(0, len(val_y), 512)
            )
        _ = correct / len(val_y)
        times.append(time.perf_counter() - start)
    return times


def dq_epochs(model, spec, splits, device, epochs: int, seed: int, run_dir: Path) -> list[float]:
    spec.trainer.epochs = epochs
    spec.trainer.early_stopping.enabled = False
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    scheduler = build_scheduler(spec.scheduler, optimizer, epochs)
    quiet = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RichProgress(quiet) as progress:
        result = fit(
            model,
            Objective(),
            splits,
            optimizer=optimizer,
            scheduler=scheduler,
            settings=FitSettings(spec.trainer, device, seed, run_dir=run_dir),
            callbacks=[ShowProgress(progress)],
        )
    return [record["time/epoch_s"] for record in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=digits model=mlp")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the medians and their ratio to this JSON file")
    args = parser.parse_args()

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(args.overrides))
    spec = to_spec(cfg)
    set_threads(spec.trainer.num_threads)
    device = resolve_device(str(spec.trainer.device))
    splits = data.build(spec.dataset, spec.seed)
    seed_everything(spec.seed)
    initial = models.build(spec.model, splits.meta).state_dict()

    plain, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for name, times in (("plain", plain), ("dq", ours)):
                model = models.build(spec.model, splits.meta).to(device)
                model.load_state_dict(initial)
                if name == "plain":
                    times += plain_epochs(model, spec, splits, device, args.epochs, spec.seed)
                else:
                    run_dir = Path(tmp) / f"round{round_index}"
                    times += dq_epochs(model, spec, splits, device, args.epochs, spec.seed, run_dir)

    plain_s, ours_s = statistics.median(plain), statistics.median(ours)
    print(
        f"data {splits.meta.name}: {len(splits.train)} train examples, model {spec.model.name}, "
        f"optimizer {spec.optimizer.name}, batch {spec.trainer.batch_size}, device {device}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"epochs timed: {len(plain)} each, median seconds per epoch")
    print(f"  plain PyTorch loop : {plain_s:.3f} s   (all: {', '.join(f'{t:.3f}' for t in plain)})")
    print(f"  dq engine          : {ours_s:.3f} s   (all: {', '.join(f'{t:.3f}' for t in ours)})")
    print(
        f"ratio dq / plain = {ours_s / plain_s:.3f} (medians), {min(ours) / min(plain):.3f} (fastest epochs)"
        "  (target <= 1.05)"
    )
    if args.json is not None:  # read by scripts/bench_e2e.py for its per-epoch row
        args.json.write_text(json.dumps({"plain_s": plain_s, "dq_s": ours_s, "ratio": ours_s / plain_s}))


if __name__ == "__main__":
    main()
