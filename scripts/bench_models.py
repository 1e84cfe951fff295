"""CPU training speed of dq's standard models: samples per second and seconds per epoch.

The field's standard models (PreAct ResNet-18, WideResNet-28-10, torchvision's ResNet-18,
the pretrained MiniLM in its three training modes) are GPU models; this says what one
CPU thread makes of them, beside dq's small CNN for scale, so a researcher can size a CPU
experiment before starting it. Each case is composed as ``dq-train`` would compose it,
trains a few warm-up batches, then times ``--steps`` optimizer steps (forward, loss,
backward, step, with any LoRA or freezing the config asks for) on the case's own training
split. Seconds per epoch = the training split's size / samples per second.

    python scripts/bench_models.py                      # every case, one torch thread
    python scripts/bench_models.py --only minilm        # the cases whose name contains it
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from dq import data, models
from dq.data_records import float_inputs
from dq.device import set_threads
from dq.engine.optim import build_optimizer
from dq.objectives.registry import build_transforms
from dq.spec import compose, to_spec

IMAGES = ["dataset=fashion_mnist", "explain.enabled=false", "optimizer=sgd", "trainer.batch_size=32"]
MINILM = ["+experiment=minilm_lora", "dataset.max_length=64", "trainer.batch_size=16"]
CASES: dict[str, list[str]] = {
    "cnn (for scale), Fashion-MNIST": [*IMAGES, "model=cnn"],
    "preact_resnet18, Fashion-MNIST": [*IMAGES, "model=preact_resnet18"],
    "wide_resnet (WRN-28-10), Fashion-MNIST": [*IMAGES, "model=wide_resnet", "trainer.batch_size=8"],
    "torchvision resnet18, Fashion-MNIST": [*IMAGES, "model=torchvision", "model.arch=resnet18"],
    "text_encoder (MiniLM) head only, Rotten Tomatoes": [*MINILM, "regularizer.lora.target=[]"],
    "text_encoder (MiniLM) LoRA r=8, Rotten Tomatoes": MINILM,
    "text_encoder (MiniLM) full fine-tuning, Rotten Tomatoes": [
        *MINILM,
        "regularizer.lora.target=[]",
        "regularizer.lora.train=['*']",
    ],
}


def samples_per_second(overrides: list[str], steps: int, warmup: int) -> tuple[float, int, int]:
    """(samples/s, training split size, trainable parameters) of one case."""
    spec = to_spec(compose(overrides))
    splits = data.build(spec.dataset, 0)
    model = models.build(spec.model, splits.meta)
    for transform in build_transforms(spec.regularizer, splits.meta):
        transform.apply(model)
    model.train()
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    batch = spec.trainer.batch_size
    x, y = splits.train.x, splits.train.y

    def step(i: int) -> None:
        index = torch.arange(i * batch, (i + 1) * batch) % len(y)
        loss = F.cross_entropy(model(float_inputs(x[index])), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return steps * batch / (time.perf_counter() - start), len(y), trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    set_threads(1)
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    print(f"one torch thread, {os.cpu_count()} CPUs, 1-minute load {load:.1f} at the start")
    print("| case | trainable parameters | samples/s | training split | s per epoch |\n|---|---|---|---|---|")
    for name, overrides in CASES.items():
        if args.only not in name:
            continue
        rate, size, trainable = samples_per_second(overrides, args.steps, args.warmup)
        print(f"| {name} | {trainable:,} | {rate:.1f} | {size:,} | {size / rate:,.0f} |", flush=True)
    print(f"1-minute load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
