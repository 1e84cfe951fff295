"""trainer.channels_last and trainer.compile (dq.engine.fast_path): a run on the fast path
trains the same model as the eager one, keeps its checkpoint keys, and channels_last is
refused in one line where it has no meaning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dq
from dq.errors import DQUserError
from dq.rundir.layout import BEST_PT
from dq.rundir.read import read_checkpoint
from dq.runner import prepare_run

DIGITS = ("dataset=digits", "model=cnn", "dataset.limit=256", "trainer.epochs=2", "explain.enabled=false")


def run(make_cfg, tmp_path: Path, name: str, *extra: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    run_dir = tmp_path / name
    metrics = dq.train(make_cfg(*DIGITS, *extra), run_dir=run_dir)
    return metrics, read_checkpoint(run_dir, BEST_PT, ("model",))["model"]


def test_channels_last_trains_the_same_model_as_eager(make_cfg, tmp_path: Path) -> None:
    eager, eager_state = run(make_cfg, tmp_path, "eager")
    fast, fast_state = run(make_cfg, tmp_path, "nhwc", "trainer.channels_last=true")
    assert fast_state.keys() == eager_state.keys()  # checkpoints load into a plain model
    weight = fast_state["features.0.weight"]
    assert weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)
    # Same batches, same initial weights: only the convolutions' summation order differs.
    assert fast["test/loss"] == pytest.approx(eager["test/loss"], rel=1e-3, abs=1e-4)
    assert abs(fast["test/accuracy"] - eager["test/accuracy"]) <= 1 / fast["test/examples"]
    for key, value in eager_state.items():
        torch.testing.assert_close(fast_state[key].contiguous(), value.contiguous(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "what"), [(("model=mlp",), "model=mlp"), (("dataset=adult", "model=mlp"), "tabular")]
)
def test_channels_last_is_refused_off_image_cnns(
    make_cfg, tmp_path: Path, overrides: tuple[str, ...], what: str
) -> None:
    cfg = make_cfg(*overrides, "trainer.channels_last=true", "explain.enabled=false")
    with pytest.raises(DQUserError, match=rf"trainer.channels_last applies to model=cnn on image data.*{what}"):
        prepare_run(cfg, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_compile_on_several_processes_is_refused(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("dataset=digits", "trainer.compile=true", "trainer.devices=2", "explain.enabled=false")
    with pytest.raises(DQUserError, match=r"trainer.compile=true is not supported with trainer.devices=2"):
        prepare_run(cfg, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_compiled_run_trains_the_same_model_as_eager(make_cfg, tmp_path: Path) -> None:
    eager, eager_state = run(make_cfg, tmp_path, "eager")
    fast, fast_state = run(make_cfg, tmp_path, "compiled", "trainer.compile=true")
    assert fast_state.keys() == eager_state.keys()  # Module.compile(): no _orig_mod. prefix
    assert fast["test/loss"] == pytest.approx(eager["test/loss"], rel=1e-3, abs=1e-4)
    assert abs(fast["test/accuracy"] - eager["test/accuracy"]) <= 1 / fast["test/examples"]
