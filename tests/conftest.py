"""Shared test set-up: one torch thread, and configs composed in-process through Hydra's
compose API from the real conf/ tree, shrunk to tiny runs (one epoch, a few examples, CPU)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from dq.spec import compose

torch.set_num_threads(1)
pytest.register_assert_rewrite("run_checks")  # its asserts explain themselves, as in test modules

# Applied before a test's own overrides, which win.
FAST = (
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "trainer.progress=false",
    "trainer.device=cpu",
    "dataset.limit=64",
    "explain.n_samples=4",
    "explain.sensitivity_samples=1",
    # A run's report.html and model_card.md cost about 2 s (matplotlib, figures): the report
    # tests turn them on.
    "report.html=false",
    "report.model_card=false",
    # Bootstrap intervals of group metrics (eval.bootstrap) are tested where they are the point.
    "eval.bootstrap=0",
)


def compose_config(overrides: Sequence[str] = (), fast: bool = True) -> DictConfig:
    return compose([*(FAST if fast else ()), *overrides])


@pytest.fixture(autouse=True)
def root_logging_as_found() -> Iterator[None]:
    """Each test leaves the root logger as it found it. An in-process ``dq-train`` sets up
    Hydra's job logging, whose console handler writes to the ``sys.stderr`` of that moment:
    pytest's capture, closed after the test. A later test's log record (e.g. the adversarial
    term's note on its validation share) would then print ``--- Logging error ---`` into
    that test's stderr instead of nothing."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """``make_cfg("dataset=adult", "model=mlp")`` → a composed, shrunk config."""
    return lambda *overrides, fast=True: compose_config(overrides, fast=fast)


def sweep_in_process(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """``dq-train -m <args>`` in this process (the basic launcher runs jobs here); its exit code."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["dq-train", "-m", *args])
    from dq.cli import train_main

    try:
        train_main()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0
