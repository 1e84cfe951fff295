"""Corrupt or truncated run files (issue 11, point 4): every reader answers each case in one
line that names the file, exit 2 for the command-line tools, never a traceback; the report
tools skip a broken run and list it; a file a reader does not need is no error there.

Issue 21: special files in a run file's place (a real named pipe, /dev/zero symlinked into
place, a symlink loop) are refused without blocking or reading them to the end, and a byte
changed inside a file that still parses (a tensor's data in a checkpoint, a digit in a
metric) is caught by checksums.json.

One real two-epoch run is trained once (dq-train in this process); each case copies it,
breaks one file one way, and hands the copy to one reader: files × corruptions × readers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from dq.cli import explain_main, report_main, table_main, train_main
from dq.errors import DQUserError
from dq.report.collect import BROKEN, read_run
from dq.rundir.layout import BEST_PT, CHECKSUMS_JSON, CONFIG_YAML, LAST_PT
from dq.rundir.load import load_run
from dq.rundir.read import CorruptRunFile, read_checkpoint, read_json

RUN = [
    "dataset=digits",
    "model=mlp",
    "dataset.limit=64",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "trainer.device=cpu",
    "trainer.progress=false",
    "explain.enabled=false",
    "report.html=false",
    "report.model_card=false",
    "eval.bootstrap=0",
]
FILES = ("run.json", "metrics.json", "metrics.jsonl", CONFIG_YAML, LAST_PT, BEST_PT, CHECKSUMS_JSON)
CORRUPTIONS = (
    "truncated",
    "empty",
    "garbage",
    "wrong_shape",
    "missing",
    "fifo",
    "dev_zero",
    "symlink_loop",
    "flipped",
)
# What each reader reads: a broken file outside its set is no error there. Every reader
# checks what it reads against checksums.json.
NEEDS = {
    "load_run": {"run.json", CONFIG_YAML, BEST_PT, "metrics.json", CHECKSUMS_JSON},
    "dq-explain": {"run.json", CONFIG_YAML, BEST_PT, "metrics.json", CHECKSUMS_JSON},
    "resume": {"run.json", CONFIG_YAML, LAST_PT, BEST_PT, "metrics.jsonl", CHECKSUMS_JSON},
    "dq-report": {"run.json", CONFIG_YAML, "metrics.json", "metrics.jsonl", CHECKSUMS_JSON},
    "dq-table": {"run.json", CONFIG_YAML, "metrics.json", "metrics.jsonl", CHECKSUMS_JSON},
}
# checksums.json lists every file but run.json (which changes with the status): a flipped
# byte in it is caught only by parsing. Without checksums.json a run is one written before
# dq recorded checksums, and loads unchecked. (A flipped byte in checksums.json itself names
# the file whose digest no longer matches: not a case of this matrix.)
UNCHECKED = {("run.json", "flipped"), (CHECKSUMS_JSON, "missing")}


def needed(reader: str, name: str, how: str) -> bool:
    return name in NEEDS[reader] and (name, how) not in UNCHECKED


# Valid JSON, YAML or torch files of the wrong shape.
WRONG_SHAPE = {
    "run.json": b"[]\n",
    "metrics.json": b'"x"\n',
    "metrics.jsonl": b"[1, 2]\n",
    CONFIG_YAML: b"- a\n- b\n",
}
TABLE = """\
name: t
title: corrupt runs
source: {cite: "nobody", where: "nowhere", setting: "none"}
setting: "tiny"
metrics: [test/accuracy]
tolerance: {abs: 1.0}
seeds: [0]
overrides: [%s]
rows:
  - label: plain
    overrides: []
    source: {test/accuracy: {mean: 0.5}}
"""


@pytest.fixture(autouse=True)
def never_blocks() -> Iterator[None]:
    """A reader that opens a named pipe would wait for a writer forever: an alarm fails the
    case after 60 s instead of hanging the suite."""

    def blocked(signum: int, frame: object) -> None:
        pytest.fail("blocked for 60 s (a named pipe opened?)")  # not an OSError: no reader may take it for one

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completed run, made by ``dq-train`` in this process (so .hydra/ is Hydra's own)."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("HYDRA_FULL_ERROR", raising=False)
        patch.setattr(sys, "argv", ["dq-train", *RUN, f"hydra.run.dir={root / 'run'}"])
        train_main()
    assert read_json(root / "run" / "run.json")["status"] == "completed"
    return root / "run"


def flip_a_byte(path: Path) -> None:
    """Change one byte so the file still parses: a bit inside a checkpoint's first tensor
    record (torch does not check the archive's CRCs), or the last digit of a JSON or YAML file."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".pt":
        import zipfile

        with zipfile.ZipFile(path) as archive:
            record = next(info for info in archive.infolist() if "/data/" in info.filename and info.file_size >= 64)
        data[record.header_offset + 30 + len(record.filename.encode()) + len(record.extra) + 32] ^= 0x01
    else:
        at = max(i for i, byte in enumerate(data) if chr(byte).isdigit())
        data[at] = ord("1") if data[at] != ord("1") else ord("2")
    path.write_bytes(bytes(data))


def corrupt(run: Path, name: str, how: str) -> None:
    """Break ``run/name`` one way; garbage is the same bytes in every run of the suite."""
    path = run / name
    data = path.read_bytes()
    if how in ("fifo", "dev_zero", "symlink_loop"):  # real special files, in the file's place
        path.unlink()
        if how == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero" if how == "dev_zero" else path.name)  # a link to itself loops
    elif how == "flipped":
        flip_a_byte(path)
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(random.Random(path.name).randbytes(max(len(data), 64)))
    elif how == "wrong_shape":
        if name == CHECKSUMS_JSON:
            path.write_bytes(b"[]\n")
        elif path.suffix == ".pt":
            torch.save([1, 2, 3], path)  # a real torch file, not a dq checkpoint
        else:
            path.write_bytes(WRONG_SHAPE[name])
    elif how == "missing":
        path.unlink()


def broken_copy(trained: Path, where: Path, name: str, how: str, status: str | None = None) -> Path:
    run = where / "run"
    shutil.copytree(trained, run)
    if status is not None:  # resume reads a run that did not finish
        (run / "run.json").write_text(json.dumps({**read_json(run / "run.json"), "status": status}))
    corrupt(run, name, how)
    return run


def call(
    main: Callable[[list[str]], None], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """A console entry point in this process: (exit code, stdout, stderr). Anything it lets escape
    (a traceback for a user) fails the test."""
    capsys.readouterr()
    try:
        main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    else:
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_naming(err: str, prefix: str, run: Path, name: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(prefix), lines[0]
    assert f"{run / name} " in lines[0], lines[0]


# Readers that pay a Hydra composition per case: in the default suite, each file they read
# once, the corruptions taken in turn (so each corruption too); the rest of their matrix is
# marked slow. The others run their whole matrix by default.
SAMPLED = ("resume", "dq-table")


def cases(reader: str) -> list:
    """Every corruption of every file the reader reads; one (garbage) of each file it does
    not read, which must be no error there (each such case costs a full, successful read)."""
    params = []
    read = [name for name in FILES if name in NEEDS[reader]]
    for name in FILES:
        for how in (
            [h for h in CORRUPTIONS if (name, h) != (CHECKSUMS_JSON, "flipped")] if name in read else ("garbage",)
        ):
            sampled = name not in read or how == CORRUPTIONS[read.index(name) % len(CORRUPTIONS)]
            marks = [pytest.mark.slow] if reader in SAMPLED and not sampled else []
            params.append(pytest.param(name, how, id=f"{name}-{how}", marks=marks))
    return params


@pytest.mark.parametrize(("name", "how"), cases("load_run"))
def test_load_run(trained: Path, tmp_path: Path, name: str, how: str) -> None:
    run = broken_copy(trained, tmp_path, name, how)
    if not needed("load_run", name, how):
        loaded = load_run(run)
        assert loaded.metrics == read_json(trained / "metrics.json")
        return
    with pytest.raises(DQUserError) as caught:
        load_run(run)
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{run / name} "), line
    assert isinstance(caught.value, CorruptRunFile)


@pytest.mark.parametrize(("name", "how"), cases("dq-explain"))
def test_dq_explain(trained: Path, tmp_path: Path, name: str, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = broken_copy(trained, tmp_path, name, how)
    overrides = ["explain.enabled=true", "explain.methods=[saliency]", "explain.metrics=[sparseness]"]
    overrides += ["explain.n_samples=4", "explain.images=false"]
    code, _, err = call(explain_main, [str(run), *overrides], capsys)
    if not needed("dq-explain", name, how):
        assert code == 0, err
        assert "explain/saliency/sparseness" in read_json(run / "metrics.json")
        return
    assert code == 2
    assert_one_line_naming(err, "dq-explain: error: ", run, name)
    if name != "metrics.json":  # nothing half-done: the metrics stay as they were
        assert read_json(run / "metrics.json") == read_json(trained / "metrics.json")


@pytest.mark.parametrize(("name", "how"), cases("resume"))
def test_dq_train_resume(
    trained: Path, tmp_path: Path, name: str, how: str, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    run = broken_copy(trained, tmp_path, name, how, status="interrupted")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def resume(argv: list[str]) -> None:
        monkeypatch.setattr(sys, "argv", ["dq-train", *argv])
        train_main()

    code, _, err = call(resume, [f"resume={run}"], capsys)
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("run.json"))
    if not needed("resume", name, how):
        assert code == 0, err
        assert read_json(run / "run.json")["status"] == "completed"
        return
    assert code == 2, err
    if how == "missing" and name in ("run.json", CONFIG_YAML):
        assert err == f"dq-train: error: resume={run} is not a dq run directory (no {run / name})\n"
        return
    assert_one_line_naming(err, "dq-train: error: cannot resume: ", run, name)
    if name == LAST_PT:  # never a silent fresh start: the line says how to start over
        assert err.rstrip().endswith(f"the run cannot continue: remove {run} to start over")
        assert not (run / LAST_PT).is_file() or (run / LAST_PT).read_bytes() != (trained / LAST_PT).read_bytes()


@pytest.mark.parametrize(("name", "how"), cases("dq-report"))
def test_dq_report_skips_and_lists_the_broken_run(
    trained: Path, tmp_path: Path, name: str, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / "good")
    run = broken_copy(trained, runs, name, how)
    code, _, err = call(report_main, [str(runs), "--out", str(tmp_path / "report")], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    csv = (tmp_path / "report" / "summary.csv").read_text(encoding="utf-8").splitlines()
    n = int(csv[1].split(",")[csv[0].split(",").index("n")])
    if not needed("dq-report", name, how):
        assert err == "" and n == 2
        return
    assert n == 1  # the good run is reported, the broken one listed
    assert err.startswith(f"dq-report: not included: {run} (broken): {name} "), err
    assert err.count("\n") == 1, err
    md = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert f"| {run.name} | broken | {name} " in md or f"| {run} | broken | {name} " in md, md


@pytest.mark.parametrize(("name", "how"), cases("dq-table"))
def test_dq_table_lists_a_broken_reused_run(
    trained: Path, tmp_path: Path, name: str, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.yaml").write_text(TABLE % ", ".join(RUN), encoding="utf-8")
    job = broken_copy(trained, tmp_path / "runs" / "plain", name, how).rename(tmp_path / "runs" / "plain" / "0")
    argv = ["t", "--tables", str(tmp_path), "--out", str(tmp_path / "tables"), "--runs", str(tmp_path / "runs")]
    code, out, err = call(table_main, [*argv, "--in-process"], capsys)
    assert err == "", err
    table = (tmp_path / "tables" / "t.md").read_text(encoding="utf-8")
    if not needed("dq-table", name, how):
        assert code == 0, out
        assert read_json(job / "run.json")["status"] == "completed"
        return
    assert code == 1, out
    assert "| plain |" in table and "failed" in table
    listed = [line for line in out.splitlines() if line.startswith("dq-table: not included: row 'plain': ")]
    assert len(listed) == 1 and listed[0].startswith(f"dq-table: not included: row 'plain': {job}: {name} "), out
    assert (job / "checkpoints" / "best.pt").read_bytes() == (trained / BEST_PT).read_bytes()  # not trained over


def test_an_epoch_log_cut_at_a_line_end_is_caught_by_its_count(trained: Path, tmp_path: Path) -> None:
    """checksums.json catches it first; a run written before dq recorded checksums (none)
    is still caught by metrics.json's count of epochs."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    first = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[0]
    (run / "metrics.jsonl").write_text(first, encoding="utf-8")  # valid JSON lines, one too few
    found = read_run(run)
    assert found.status == BROKEN and found.problem.startswith("metrics.jsonl has changed since it was written")
    (run / CHECKSUMS_JSON).unlink()
    found = read_run(run)
    assert (found.status, found.problem) == (
        BROKEN,
        "metrics.jsonl holds 1 epoch line(s), but metrics.json says 2 epoch(s) ran; re-run the training or restore the file",
    )


def test_a_failed_job_run_again_by_dq_table_logs_only_its_own_epochs(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the matrix: a fresh run in a directory that held a failed one appended its
    epochs to the old metrics.jsonl (4 lines for 2 epochs), which the reports now refuse."""
    (tmp_path / "t.yaml").write_text(TABLE % ", ".join(RUN), encoding="utf-8")
    job = tmp_path / "runs" / "plain" / "0"
    shutil.copytree(trained, job)
    (job / "run.json").write_text(json.dumps({**read_json(job / "run.json"), "status": "failed", "error": "x"}))
    argv = ["t", "--tables", str(tmp_path), "--out", str(tmp_path / "tables"), "--runs", str(tmp_path / "runs")]
    code, out, err = call(table_main, [*argv, "--in-process"], capsys)
    assert (code, err) == (0, ""), out
    assert read_json(job / "run.json")["status"] == "completed"
    assert len((job / "metrics.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_init_from_a_run_with_a_truncated_best_pt_names_the_file(trained: Path, tmp_path: Path) -> None:
    from dq.objectives.lora.pretrained import load_pretrained

    run = broken_copy(trained, tmp_path, BEST_PT, "truncated")
    model = load_run(trained).model
    with pytest.raises(DQUserError) as caught:
        load_pretrained(model, run)
    assert str(caught.value).startswith(
        f"regularizer.lora.init_from={run}: {run / BEST_PT} is truncated or not a torch checkpoint (RuntimeError: "
    )
    assert str(caught.value).endswith("; re-run the training or restore the file")


def test_a_checkpoint_holding_a_pickled_object_is_refused_by_name(tmp_path: Path) -> None:
    from datetime import datetime

    (tmp_path / "checkpoints").mkdir()
    torch.save({"model": {}, "when": datetime(2020, 1, 1)}, tmp_path / BEST_PT)
    with pytest.raises(CorruptRunFile) as caught:
        read_checkpoint(tmp_path, BEST_PT, ("model",))
    assert str(caught.value) == (
        f"{tmp_path / BEST_PT} holds pickled Python objects; dq loads only tensors and plain values (Unsupported global: GLOBAL "
        "datetime.datetime was not an allowed global by default; checkpoints load with weights_only=True); "
        "re-run the training or restore the file"
    )
