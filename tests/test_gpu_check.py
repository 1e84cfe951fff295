"""scripts/gpu_check.py: on a machine without CUDA one line and exit 0; its checks, which
are device-generic, run on CPU here (the CUDA run's output is in docs/guides/running.md
where a GPU was available); a failing check is a ✗ line with its error and exit 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from script_module import SCRIPTS, load_script

SCRIPT = SCRIPTS / "gpu_check.py"


def test_without_cuda_it_says_so_in_one_line_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check\n")


def test_the_checks_cover_every_cuda_path_of_the_issue() -> None:
    names = [check.name for check in load_script("gpu_check.py").CHECKS]
    for path in ("amp bfloat16", "amp float16", "channels_last", "torch.compile", "DDP over NCCL", "torchao"):
        assert any(path in name for name in names), path
    for path in ("AutoAttack", "PreAct ResNet-18", "WideResNet-28-10", "torchvision resnet18"):
        assert path in names
    assert len(set(names)) == len(names)


def test_checks_run_on_cpu_and_print_their_figures(tmp_path) -> None:
    """The float16 AMP path, the DDP path (gloo on CPU) and a vision model's path run here
    through the same functions; each prints ✓ with an accuracy that is a fraction of the
    64-image test split's examples."""
    script = load_script("gpu_check.py")
    ctx = script.Context("cpu", tmp_path, limit=200, epochs=1)
    chosen = [c for c in script.CHECKS if c.name in {"amp float16 + gradient scaler", "DDP over NCCL, one process"}]
    lines: list[str] = []
    outcomes = script.run_checks(chosen, ctx, out=lines.append)
    narrow = script.Context("cpu", tmp_path, limit=200, epochs=1, overrides=("model.width=4",))
    outcomes += script.run_checks([c for c in script.CHECKS if c.name == "PreAct ResNet-18"], narrow, lines.append)
    assert [o.error for o in outcomes] == [None, None, None], lines
    assert all(line.startswith("✓ ") for line in lines)
    amp, ddp, preact = (o.figures for o in outcomes)
    assert 0.0 <= amp["accuracy"] <= 1.0 and amp["samples/s"] > 0
    assert amp["samples/s"] == pytest.approx(len_train(ctx) / amp["train_s"])
    assert ddp["last_loss"] < ddp["first_loss"]  # 20 SGD steps learn something
    assert "accuracy" in preact and "samples/s" in lines[2]


def len_train(ctx) -> int:
    from dq import data
    from dq.data.registry import dataset_config

    return len(data.build(dataset_config("fashion_mnist", limit=ctx.limit), seed=0).train)


def test_a_failing_path_is_a_cross_with_its_error_line_and_exit_1(tmp_path, monkeypatch, capsys) -> None:
    script = load_script("gpu_check.py")

    def broken(ctx) -> dict[str, float]:
        raise RuntimeError("CUDA error: no kernel image is available\nsecond line")

    monkeypatch.setattr(script.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(script.torch.cuda, "get_device_name", lambda: "a test device")
    monkeypatch.setattr(script, "CHECKS", [script.Check("broken path", broken)])
    assert script.main([]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("✗ broken path")
    assert out[1].endswith("RuntimeError: CUDA error: no kernel image is available")
    assert out[2] == "gpu_check: 0 of 1 paths ran; failed: broken path"
    assert script.main(["--only", "nothing"]) == 2
