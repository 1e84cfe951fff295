"""A full disk loses nothing: a run that finds no room stops with one line, run.json says
``failed``, every file written before is byte for byte as it was (no partial file replaces a
good one, no temporary file is left), and once there is room the run continues to the end.

Two real ways to run out of room: the file-size limit (RLIMIT_FSIZE, no privileges needed,
set in this process for the block with SIGXFSZ ignored, so writes fail with EFBIG), and a
small tmpfs filled up (ENOSPC; needs root to mount, skipped where mounting is refused).
"""

from __future__ import annotations

import errno
import io
import json
import logging
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
from dq.rundir.read import read_json, read_jsonl
from dq.rundir.write import append_jsonl, save_torch, write_json

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


def fill(where: Path) -> None:
    """Write a ballast file until the filesystem under ``where`` has no room left at all
    (ever smaller writes, unbuffered, down to one byte)."""
    fd = os.open(where / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)
    assert os.statvfs(where).f_bavail == 0


def test_a_disk_that_fills_after_training_gives_one_line_and_no_logging_traceback(
    small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """dq-train (in this process, so Hydra logs to <run>/cli.log): the disk fills once training
    and the test metrics are written; the explanations' log lines then find no room in cli.log,
    and their files none either. One line on stderr, none of logging's tracebacks."""
    import dq.explain.run

    explain_run = dq.explain.run.explain_run

    def fill_then_explain(*args, **kwargs):  # the real explanations, on a really full disk
        fill(small_tmpfs)
        return explain_run(*args, **kwargs)

    monkeypatch.setattr(dq.explain.run, "explain_run", fill_then_explain)
    run_dir = small_tmpfs / "run"
    monkeypatch.chdir(small_tmpfs.parent)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    argv = [*RUN[:2], "dataset.limit=64", "trainer.epochs=1", "trainer.progress=false", "eval.bootstrap=0"]
    argv += ["explain.methods=[saliency]", "explain.n_samples=4", "report.html=false", "report.model_card=false"]
    monkeypatch.setattr(sys, "argv", ["dq-train", *argv, f"hydra.run.dir={run_dir}"])
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as stop:
            train_main()
    finally:  # Hydra's handler keeps cli.log open: close it, or the tmpfs cannot be unmounted
        for handler in logging.getLogger().handlers[:]:
            if isinstance(handler, logging.FileHandler) and handler.baseFilename.startswith(str(small_tmpfs)):
                handler.close()
                logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert stop.value.code == 1, err
    assert "Logging error" not in err and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith(f"dq-train: error: no space left on device writing {run_dir}/"), err
    assert read_json(run_dir / "run.json")["status"] != "completed"
