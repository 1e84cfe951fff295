"""Does every CUDA path of dq run on this machine? One script, a few minutes, no network.

Each check trains dq for real, in this process, on Fashion-MNIST (the Debian package dq
reads offline; the first ``--limit`` images) and prints its figures: wall time, the
training's samples per second, test accuracy. A check that fails prints ✗ with its error
line and the script exits 1; all passing, 0. Without CUDA it prints one line and exits 0,
so CI machines without a GPU can run it.

    python scripts/gpu_check.py                 # every check (make gpu-check)
    python scripts/gpu_check.py --only amp      # the checks whose name contains "amp"
    python scripts/gpu_check.py --limit 8192 --epochs 3

The paths: mixed precision in bfloat16 and in float16 (with its gradient scaler),
channels-last, torch.compile, DistributedDataParallel over NCCL in one process, torchao's
int8 quantisation on CUDA, AutoAttack on CUDA, and the standard vision models (PreAct
ResNet-18, WRN-28-10, a torchvision ResNet-18) with AMP and channels-last. Each check is a
``Check`` in ``CHECKS``: a new CUDA path is one line there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

import dq
from dq import data
from dq import metric_keys as keys
from dq.errors import first_line
from dq.models.text_encoder import device_check
from dq.rundir.read import read_run_json
from dq.spec import compose, to_spec


@dataclass(frozen=True)
class Context:
    """Where and how big: ``device`` is ``cuda`` here (``cpu`` in the tests of the functions)."""

    device: str
    work: Path
    limit: int = 4096
    epochs: int = 2
    overrides: tuple[str, ...] = ()  # added to every run (the tests shrink the models)


Figures = dict[str, float]


@dataclass(frozen=True)
class Check:
    """One path: its name and what runs it, returning the figures to print."""

    name: str
    run: Callable[[Context], Figures]


@dataclass
class Outcome:
    check: Check
    figures: Figures = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def base_overrides(ctx: Context) -> list[str]:
    """A short run on Fashion-MNIST on ``ctx.device``, without the parts no check is about."""
    return [
        "dataset=fashion_mnist",
        f"dataset.limit={ctx.limit}",
        f"trainer.epochs={ctx.epochs}",
        "trainer.batch_size=128",
        f"trainer.device={ctx.device}",
        "trainer.progress=false",
        "trainer.early_stopping.enabled=false",
        "explain.enabled=false",
        "report.html=false",
        "report.model_card=false",
        "eval.bootstrap=0",
    ]


def train_check(overrides: Sequence[str], ctx: Context) -> Figures:
    """``dq.train`` with ``overrides`` on top of ``base_overrides``: accuracy and speed.

    Raises:
        RuntimeError: the run trained elsewhere than on ``ctx.device`` (run.json's device type).
    """
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=ctx.work))
    cfg = compose([*base_overrides(ctx), *overrides, *ctx.overrides])
    metrics = dq.train(cfg, run_dir=run_dir)
    ran_on = read_run_json(run_dir)["device"]["type"]
    if ran_on != ctx.device:
        raise RuntimeError(f"the run trained on {ran_on}, not {ctx.device}")
    spec = to_spec(cfg)
    examples = len(data.build(spec.dataset, spec.seed).train) * metrics[keys.train("epochs_run")]
    trained = metrics[keys.time("train_s")]
    figures = {"accuracy": metrics["test/accuracy"], "train_s": trained, "samples/s": examples / trained}
    figures.update({k: v for k, v in metrics.items() if k.startswith(("test/robust_accuracy", "compress/test/acc"))})
    return figures


def text_encoder_check(ctx: Context) -> Figures:
    """The packaged MiniLM encoder on ``ctx.device``: its fp32 logits against the CPU's, and
    forward/backward steps under bf16 autocast (``dq.models.text_encoder.device_check``)."""
    return device_check(ctx.device)


def ddp_check(ctx: Context) -> Figures:
    """DistributedDataParallel in one process: NCCL on CUDA (gloo on CPU) over an in-memory
    store, a dq CNN trained for 20 steps, and an all-reduce whose sum is checked.

    dq's own ``trainer.devices=N`` needs N GPUs; one process is what any one-GPU machine
    can check of the NCCL path (its kernels, the gradient bucket all-reduce)."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from dq import models
    from dq.data.registry import dataset_config
    from dq.models.cnn import CNNConfig

    device = torch.device(ctx.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        splits = data.build(dataset_config("fashion_mnist", limit=ctx.limit), seed=0)
        torch.manual_seed(0)
        model = models.build(CNNConfig(), splits.meta).to(device)
        net = DistributedDataParallel(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        x, y = splits.train.x.to(device), splits.train.y.to(device)
        began, losses = time.perf_counter(), []
        for step in range(20):
            rows = torch.arange(step * 64, (step + 1) * 64, device=device) % len(x)
            loss = F.cross_entropy(net(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        ones = torch.ones(4, device=device)
        dist.all_reduce(ones)
        if not torch.equal(ones.cpu(), torch.ones(4)):
            raise RuntimeError(f"all_reduce over one rank changed the tensor: {ones.tolist()}")
        return {"train_s": time.perf_counter() - began, "first_loss": losses[0], "last_loss": losses[-1]}
    finally:
        dist.destroy_process_group()


VISION = ("trainer.amp=true", "trainer.channels_last=true")
# The MiniLM LoRA preset on its own data (the base's dataset=fashion_mnist is replaced).
MINILM_LORA = ("+experiment=minilm_lora", "dataset=rotten_tomatoes")

# Every CUDA path, in the order they run. One line adds a check (e.g. the text encoder's).
CHECKS: list[Check] = [
    Check("amp bfloat16", partial(train_check, ["trainer.amp=true", "trainer.amp_dtype=bfloat16"])),
    Check("amp float16 + gradient scaler", partial(train_check, ["trainer.amp=true", "trainer.amp_dtype=float16"])),
    Check("channels_last", partial(train_check, ["trainer.channels_last=true"])),
    Check("torch.compile", partial(train_check, ["trainer.compile=true"])),
    Check("DDP over NCCL, one process", ddp_check),
    Check("torchao int8 (compress=quantize)", partial(train_check, ["compress=quantize"])),
    Check(
        "AutoAttack",
        partial(train_check, ["eval.robust.attack=autoattack", "eval.robust.eps=[0.1]", "eval.robust.limit=128"]),
    ),
    Check("PreAct ResNet-18", partial(train_check, ["model=preact_resnet18", *VISION])),
    Check("WideResNet-28-10", partial(train_check, ["model=wide_resnet", *VISION])),
    Check("torchvision resnet18", partial(train_check, ["model=torchvision", "model.arch=resnet18", *VISION])),
    Check("text encoder (MiniLM), fp32 and bf16", text_encoder_check),
    Check("MiniLM LoRA (+experiment=minilm_lora)", partial(train_check, [*MINILM_LORA])),
]


def run_checks(checks: Sequence[Check], ctx: Context, out=print) -> list[Outcome]:
    """Run each check, printing one line per check as it ends (✓ with figures, ✗ with the error line)."""
    outcomes = []
    for check in checks:
        outcome, began = Outcome(check), time.perf_counter()
        try:
            outcome.figures = check.run(ctx)
        except Exception as error:  # a failing path is a result to print, not the end of the script
            outcome.error = f"{type(error).__name__}: {first_line(str(error))}"
        outcome.seconds = time.perf_counter() - began
        out(describe(outcome))
        outcomes.append(outcome)
    return outcomes


def describe(outcome: Outcome) -> str:
    """``✓ name  12.3 s  accuracy 0.8125  samples/s 3,400`` or ``✗ name  4.1 s  Error: line``."""
    head = f"{'✗' if outcome.error else '✓'} {outcome.check.name:<34} {outcome.seconds:7.1f} s"
    if outcome.error:
        return f"{head}  {outcome.error}"
    return "  ".join([head, *(f"{k} {_number(v)}" for k, v in outcome.figures.items())])


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=4096, help="Fashion-MNIST images used (default 4096)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training check (default 2)")
    parser.add_argument("--only", default="", help="run the checks whose name contains this text")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check")
        return 0
    checks = [check for check in CHECKS if args.only.lower() in check.name.lower()]
    if not checks:
        print(f"gpu_check: no check's name contains {args.only!r}; names: {', '.join(c.name for c in CHECKS)}")
        return 2
    print(
        f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
        f"Fashion-MNIST {args.limit} images, {args.epochs} epochs per training check"
    )
    with tempfile.TemporaryDirectory(prefix="dq-gpu-check-") as work:
        outcomes = run_checks(checks, Context("cuda", Path(work), args.limit, args.epochs))
    failed = [o.check.name for o in outcomes if o.error]
    print(
        f"gpu_check: {len(outcomes) - len(failed)} of {len(outcomes)} paths ran"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
