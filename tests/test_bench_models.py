"""scripts/bench_models.py times what its case names say: each case composes as dq-train
would, trains the parameters its label names, and reports a rate over its own split."""

from __future__ import annotations

import pytest

from script_module import load_script

bench = load_script("bench_models.py")


@pytest.mark.parametrize(
    ("case", "trainable"),
    [
        ("cnn (for scale), Fashion-MNIST", 421_738),
        ("text_encoder (MiniLM) head only, Rotten Tomatoes", 770),
        ("text_encoder (MiniLM) LoRA r=8, Rotten Tomatoes", 74_498),
        ("text_encoder (MiniLM) full fine-tuning, Rotten Tomatoes", 22_566_146),
    ],
)
def test_each_case_trains_what_its_name_says_on_its_own_split(case: str, trainable: int) -> None:
    rate, size, counted = bench.samples_per_second([*bench.CASES[case], "dataset.limit=24"], steps=1, warmup=0)
    assert counted == trainable
    assert size == 24  # the case's training split, as capped
    assert rate > 0
