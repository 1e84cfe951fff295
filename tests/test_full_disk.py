"""A full disk loses nothing: a run that finds no room stops with one line, run.json says
``failed``, every file written before is byte for byte as it was (no partial file replaces a
good one, no temporary file is left), and once there is room the run continues to the end.

Two real ways to run out of room: the file-size limit (RLIMIT_FSIZE, no privileges needed,
set in this process for the block with SIGXFSZ ignored, so writes fail with EFBIG), and a
small tmpfs filled up (ENOSPC; needs root to mount, skipped where mounting is refused).
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from rich.console import Console

import dq
from conftest import compose_config
from dq.cli import report_main, train_main
from dq.errors import DiskFull
from dq.outputs import append_jsonl, read_json, read_jsonl, save_torch, write_json

# 50,826 parameters: last.pt is about 640 kB, best.pt about 210 kB, every other file < 4 kB.
RUN = ("dataset=digits", "model=mlp", "explain.enabled=false")
FAILED_WRITE = (
    r"no space left on device writing .*/checkpoints/(best|last)\.pt \((File too large|No space left on device)\)"
)


def train(run_dir: Path, epochs: int, *, resume: bool = False) -> dict:
    return dq.train(
        compose_config([*RUN, f"trainer.epochs={epochs}"]),
        run_dir=run_dir,
        console=Console(file=io.StringIO()),
        resume=resume,
    )


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """RLIMIT_FSIZE in this process for the block (soft limit only, so it can be put back),
    with SIGXFSZ ignored: a write past it fails with EFBIG instead of killing the process.
    Nothing may be printed inside (pytest's capture files obey the limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def assert_nothing_lost(run_dir: Path, before: dict[str, bytes]) -> None:
    """Checkpoints and metrics.json as they were; metrics.jsonl grown by whole lines at most."""
    after = snapshot(run_dir)
    assert not [name for name in after if name.endswith(".tmp")]
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.json"):
        assert after[name] == before[name], name
    lines = after["metrics.jsonl"]
    assert lines.startswith(before["metrics.jsonl"]) and lines.endswith(b"\n")
    assert [json.loads(line)["epoch"] for line in lines.splitlines()][:2] == [1, 2]


def test_the_file_size_limit_stops_dq_train_with_one_line_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dq-train resume=<run> trainer.epochs=4`` (in this process) under a limit too small
    for either checkpoint but large enough for run.json, metrics.jsonl and the config."""
    run_dir = tmp_path / "run"
    train(run_dir, 2)
    before = snapshot(run_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["dq-train", f"resume={run_dir}", "trainer.epochs=4", "trainer.progress=false"])
    capsys.readouterr()
    with file_size_limit(len(before["checkpoints/best.pt"]) - 1), pytest.raises(SystemExit) as stop:
        train_main()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    hint = f"; free space, then continue with: dq-train resume={run_dir}"
    assert err.startswith("dq-train: error: ") and err.endswith(f"{hint}\n") and err.count("\n") == 1, err
    line = err.removeprefix("dq-train: error: ").strip()
    assert re.fullmatch(FAILED_WRITE, line.removesuffix(hint).replace(str(run_dir), "")) is not None, line
    info = read_json(run_dir / "run.json")
    assert info["status"] == "failed" and info["error"] == f"DiskFull: {line}"
    assert_nothing_lost(run_dir, before)

    train(run_dir, 4, resume=True)  # room again: the run goes on from epoch 2's last.pt
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3, 4]

    # dq-report without room for its tables: one line, exit 1, the run untouched.
    finished, out = snapshot(run_dir), tmp_path / "report"
    capsys.readouterr()
    with file_size_limit(1024), pytest.raises(SystemExit) as stop:
        report_main([str(run_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1
    assert err.startswith(f"dq-report: error: no space left on device writing {out}/") and "(File too large)" in err
    assert snapshot(run_dir) == finished and not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_failed_writes_leave_the_old_file_and_no_half_line(tmp_path: Path) -> None:
    """Each write would cross a 4 kB limit part way: an append to metrics.jsonl is cut back
    to its old length; an atomic write (text, torch) leaves the old file and no temporary one."""
    jsonl, metrics, last = tmp_path / "metrics.jsonl", tmp_path / "metrics.json", tmp_path / "last.pt"
    jsonl.write_text('{"epoch": 1, "pad": "' + "z" * 2000 + '"}\n')
    metrics.write_text('{"test/accuracy": 0.9}\n')
    last.write_bytes(b"an earlier checkpoint")
    before = snapshot(tmp_path)
    writes = {
        jsonl: lambda: append_jsonl(jsonl, {"epoch": 2, "pad": "x" * 3000}),
        metrics: lambda: write_json(metrics, {"pad": "y" * 5000}),
        last: lambda: save_torch(last, {"w": torch.zeros(2000)}),
    }
    errors = []
    with file_size_limit(4096):
        for write in writes.values():
            try:
                write()
            except DiskFull as error:
                errors.append(str(error))
    assert errors == [f"no space left on device writing {path} (File too large)" for path in writes]
    assert snapshot(tmp_path) == before  # byte for byte, and no .tmp file beside them


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs of this test's own, unmounted afterwards; skipped where mount is refused."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot run mount here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=30)


def test_a_full_filesystem_stops_a_run_with_one_line_and_loses_nothing(small_tmpfs: Path) -> None:
    run_dir = small_tmpfs / "run"
    train(run_dir, 2)
    before = snapshot(run_dir)
    ballast = small_tmpfs / "ballast"
    free = os.statvfs(small_tmpfs)
    ballast.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 100_000))  # 100 kB left: no checkpoint fits
    with pytest.raises(DiskFull) as caught:
        train(run_dir, 4, resume=True)
    line = str(caught.value)
    assert line.endswith(f"; free space, then continue with: dq-train resume={run_dir}")
    assert re.match(FAILED_WRITE, line.replace(str(run_dir), "")) is not None, line
    info = read_json(run_dir / "run.json")
    assert info["status"] == "failed" and info["error"] == f"DiskFull: {line}"
    assert_nothing_lost(run_dir, before)

    ballast.unlink()
    train(run_dir, 4, resume=True)
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3, 4]
