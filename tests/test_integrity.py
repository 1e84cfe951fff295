"""Run files carry their checksums, stale temporary files go, reports print no control
characters (issue 21, points 2, 4, 5, 6).

One real two-epoch run is trained once; each test copies it and changes one real file.
The matrix of corrupt and special files per reader is tests/test_corrupt_files.py.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from rich.console import Console

import dq
from conftest import compose_config
from dq.cli import compress_main, report_main
from dq.errors import DQUserError
from dq.rundir.checksums import write_recorded
from dq.rundir.layout import BEST_PT, CHECKSUMS_JSON, LAST_PT
from dq.rundir.load import load_run
from dq.rundir.read import CorruptRunFile, read_checkpoint, read_json
from dq.rundir.write import save_torch
from test_corrupt_files import call, flip_a_byte

RUN = ["dataset=digits", "model=mlp", "explain.enabled=false", "trainer.epochs=2"]


def train(run_dir: Path, epochs: int = 2, resume: bool = False) -> dict:
    cfg = compose_config([*RUN[:3], f"trainer.epochs={epochs}"])
    return dq.train(cfg, run_dir=run_dir, console=Console(file=open(os.devnull, "w")), resume=resume)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    train(run_dir)
    return run_dir


def copy(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_checksums_json_lists_every_file_the_run_wrote_with_its_sha256(trained: Path) -> None:
    import hashlib

    manifest = read_json(trained / CHECKSUMS_JSON)
    names = {"metrics.json", "metrics.jsonl", ".hydra/config.yaml", LAST_PT, BEST_PT}
    assert set(manifest["files"]) == names and manifest["writing"] == {}
    for name in names:
        assert manifest["files"][name] == hashlib.sha256((trained / name).read_bytes()).hexdigest(), name


def test_a_flipped_byte_in_best_pt_tensor_data_is_one_line_in_load_run_and_dq_compress(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy(trained, tmp_path)
    flip_a_byte(run / BEST_PT)
    torch.load(run / BEST_PT, weights_only=True)  # torch itself loads it: other weights, no error
    with pytest.raises(CorruptRunFile) as caught:
        load_run(run)
    assert str(caught.value).startswith(f"{run / BEST_PT} has changed since it was written (sha256 ")
    code, _, err = call(compress_main, [str(run), "compress=prune"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"dq-compress: error: {run / BEST_PT} has changed since it was written"), err
    assert not (run / "compressed").exists()


def test_a_named_pipe_for_best_pt_is_named_by_dq_compress_without_blocking(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy(trained, tmp_path)
    (run / BEST_PT).unlink()
    os.mkfifo(run / BEST_PT)
    code, _, err = call(compress_main, [str(run), "compress=prune"], capsys)
    assert (code, err) == (
        2,
        f"dq-compress: error: {run / BEST_PT} is a named pipe (FIFO), not a regular file; "
        "re-run the training or restore the file\n",
    )


def test_a_deleted_metrics_jsonl_is_named_by_load_run(trained: Path, tmp_path: Path) -> None:
    run = copy(trained, tmp_path)
    (run / "metrics.jsonl").unlink()
    with pytest.raises(CorruptRunFile) as caught:
        load_run(run)
    assert str(caught.value) == (
        f"{run / 'metrics.jsonl'} does not exist, but checksums.json lists it; re-run the training or restore the file"
    )


def test_a_run_written_before_checksums_still_loads(trained: Path, tmp_path: Path) -> None:
    run = copy(trained, tmp_path)
    (run / CHECKSUMS_JSON).unlink()
    (run / "metrics.jsonl").unlink()  # nothing says it was there: a baseline writes none
    assert load_run(run).metrics == read_json(trained / "metrics.json")


def test_a_kill_between_the_rename_and_the_record_leaves_a_file_that_still_verifies(
    trained: Path, tmp_path: Path
) -> None:
    """The new last.pt is in place, its digest only under ``writing``: the process stopped
    (SystemExit here, where a kill -9 would land) before checksums.json moved it to ``files``."""
    run = copy(trained, tmp_path)
    state = torch.load(run / LAST_PT, weights_only=True)
    state["epoch"] = 7

    def write_then_die(hook) -> None:
        save_torch(run / LAST_PT, state, hook)
        raise SystemExit("killed")

    with pytest.raises(SystemExit):
        write_recorded(run, LAST_PT, write_then_die)
    manifest = read_json(run / CHECKSUMS_JSON)
    assert manifest["files"][LAST_PT] != manifest["writing"][LAST_PT]
    assert read_checkpoint(run, LAST_PT, ("epoch",))["epoch"] == 7


def test_stale_temporary_files_of_a_killed_process_are_removed_when_the_run_resumes(
    trained: Path, tmp_path: Path
) -> None:
    run = copy(trained, tmp_path)
    (run / "run.json").write_text(json.dumps({**read_json(run / "run.json"), "status": "interrupted"}))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a real process, exited and reaped: its pid is free
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [
            run / f".metrics.json.{dead_pid}.0badc0de.tmp",
            run / "checkpoints" / f".last.pt.{dead_pid}.12345678.tmp",
        ]
        kept = [run / f".metrics.json.{live.pid}.0badc0de.tmp", run / "notes.tmp", run / "checkpoints" / ".last.pt.tmp"]
        for path in [*stale, *kept]:
            path.write_bytes(b"x" * 2_000_000)
        train(run, epochs=3, resume=True)
        assert read_json(run / "run.json")["status"] == "completed"
        assert [path for path in stale if path.exists()] == []
        assert [path for path in kept if not path.exists()] == []  # a live writer's, and names dq never makes
    finally:
        live.kill()
        live.wait()


def test_a_plain_pickle_in_place_of_a_checkpoint_says_it_holds_pickled_objects(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    with open(tmp_path / BEST_PT, "wb") as handle:
        pickle.dump({"model": {"w": [1.0, 2.0]}}, handle)
    with pytest.raises(CorruptRunFile) as caught, warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warning about the pickle protocol would be a second line
        read_checkpoint(tmp_path, BEST_PT, ("model",))
    assert str(caught.value) == (
        f"{tmp_path / BEST_PT} holds pickled Python objects; dq loads only tensors and plain values "
        "(a plain pickle file, not a torch checkpoint); re-run the training or restore the file"
    )


@pytest.mark.parametrize("special", ["dev_zero", "fifo"])
def test_resume_names_what_best_pt_is_never_that_it_does_not_exist(trained: Path, tmp_path: Path, special: str) -> None:
    run = copy(trained, tmp_path)
    (run / "run.json").write_text(json.dumps({**read_json(run / "run.json"), "status": "interrupted"}))
    (run / BEST_PT).unlink()
    if special == "fifo":
        os.mkfifo(run / BEST_PT)
    else:
        (run / BEST_PT).symlink_to("/dev/zero")
    with pytest.raises(DQUserError) as caught:
        train(run, epochs=3, resume=True)
    what = "a named pipe (FIFO)" if special == "fifo" else "a character device (/dev/zero)"
    assert str(caught.value) == (
        f"cannot resume: {run / BEST_PT} is {what}, not a regular file; re-run the training or restore the file"
    )


def test_control_characters_in_a_metric_name_reach_no_report_file_nor_the_terminal_raw(
    trained: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A metrics.json edited by hand (checksums.json removed, as in a run written before
    them): ESC sequences and a right-to-left override in a metric's name."""
    run = copy(trained, tmp_path)
    (run / CHECKSUMS_JSON).unlink()
    hostile = "test/\x1b[2J\x1b[31mred\u202eevil\x9b"
    (run / "metrics.json").write_text(json.dumps({**read_json(run / "metrics.json"), hostile: 0.5}))
    out = tmp_path / "report"
    code, stdout, stderr = call(report_main, [str(run), "--out", str(out), "--metrics", "test/*evil*"], capfd)
    terminal = stdout + stderr
    assert code == 0 and "x1b[31mred" in terminal, terminal
    raw = ("\x1b", "\u202e", "\x9b")
    for name in ("summary.md", "summary.tex", "report.html"):
        text = (out / name).read_text(encoding="utf-8")
        assert not [char for char in raw if char in text], name
        assert "x1b[31mred" in text and "u202eevil" in text, name  # shown, as escapes
    assert not [char for char in raw if char in terminal], terminal
