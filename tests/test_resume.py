"""Resume from last.pt, pre-emption and the non-finite stop.

The proof that counts: a run stopped anywhere (after an epoch, between two batches, by
SIGKILL or by SIGTERM) and resumed ends with the same metrics.json and metrics.jsonl as
one never stopped (times aside). In-process where possible; a few real ``dq-train``
subprocesses for the signals and exit codes.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from rich.console import Console

import dq
from conftest import compose_config
from dq import data, models
from dq.device import seed_everything
from dq.engine import preemption
from dq.engine.callbacks import ShowProgress
from dq.engine.loop import FitSettings, fit
from dq.engine.nonfinite import ADVICE
from dq.engine.optim import build_optimizer, build_scheduler
from dq.errors import DQUserError, RunInterrupted
from dq.objectives.registry import build_objective
from dq.rundir.read import read_json, read_jsonl
from dq.rundir.resume import load_resume_point, read_last
from dq.rundir.resume_config import resumed_config
from dq.spec import to_spec

DIGITS = ("dataset=digits", "model=mlp", "explain.enabled=false")
# Dropout, a step schedule and live early-stopping state (patience 2): all must carry over.
STATEFUL = (*DIGITS, "model.dropout=0.3", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.7")
STATEFUL += ("trainer.early_stopping.patience=2", "dataset.limit=200")


@pytest.fixture(autouse=True)
def no_leftover_stop_request() -> Iterator[None]:
    preemption.clear_stop_request()
    yield
    preemption.clear_stop_request()


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def without_times(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("time/")}


def assert_same_run(resumed: Path, reference: Path) -> None:
    """metrics.json key by key and metrics.jsonl line by line, times aside."""
    assert without_times(read_json(resumed / "metrics.json")) == without_times(read_json(reference / "metrics.json"))
    lines, expected = read_jsonl(resumed / "metrics.jsonl"), read_jsonl(reference / "metrics.jsonl")
    assert [without_times(r) for r in lines] == [without_times(r) for r in expected]


def run_in_process(run_dir: Path, *overrides: str, resume: bool = False) -> dict:
    return dq.train(compose_config(overrides), run_dir=run_dir, console=quiet(), resume=resume)


@pytest.mark.parametrize(
    "overrides",
    [
        STATEFUL,
        (*DIGITS, "regularizer=[adversarial,robust_fairness]", "dataset.limit=96"),
        (*DIGITS, "regularizer=[lora]", "regularizer.lora.dropout=0.2", "dataset.limit=96"),
    ],
    ids=["dropout-step-early_stopping", "adversarial-robust_fairness", "lora"],
)
def test_a_run_extended_by_resuming_equals_one_trained_that_long(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    """Two epochs, then resumed to four: the same as four from the start. PGD's random starts
    draw from the global torch RNG, FRL-Reweight's multipliers carry over in last.pt, LoRA's
    adapters are put on again (``restoring``) before last.pt's weights are loaded."""
    run_in_process(tmp_path / "whole", *overrides, "trainer.epochs=4")
    run_in_process(tmp_path / "parts", *overrides, "trainer.epochs=2")
    assert len(read_jsonl(tmp_path / "parts" / "metrics.jsonl")) == 2
    metrics = run_in_process(tmp_path / "parts", *overrides, "trainer.epochs=4", resume=True)

    assert_same_run(tmp_path / "parts", tmp_path / "whole")
    assert without_times(metrics) == without_times(read_json(tmp_path / "whole" / "metrics.json"))
    info = read_json(tmp_path / "parts" / "run.json")
    assert info["status"] == "completed" and len(info["resumed"]) == 1
    saved = (tmp_path / "parts" / ".hydra" / "config.yaml").read_text()
    assert "epochs: 4" in saved  # the saved config follows the grown epoch count
    if "regularizer=[adversarial,robust_fairness]" in overrides:
        weights = [k for k in read_jsonl(tmp_path / "parts" / "metrics.jsonl")[-1] if "robust_fairness/weight" in k]
        assert len(weights) == 10


class SignalAt:
    """A progress display that sends this process SIGTERM after batch ``batch`` of ``epoch``:
    a deterministic pre-emption between two batches."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.target, self.epoch = (epoch, batch), 0

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        self.epoch = epoch

    def advance(self, batches_done: int, running_loss: float) -> None:
        if (self.epoch, batches_done) == self.target:
            os.kill(os.getpid(), signal.SIGTERM)

    def end_epoch(self, record: dict[str, float]) -> None:
        pass


def fit_digits(run_dir: Path, progress=None, resume_from=None):
    """``fit`` on freshly built parts, as the runner builds them."""
    spec = to_spec(compose_config((*STATEFUL, "trainer.epochs=3")))
    splits = data.build(spec.dataset, spec.seed)
    seed_everything(spec.seed)
    model = models.build(spec.model, splits.meta)
    objective = build_objective(spec.regularizer, splits.meta)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    scheduler = build_scheduler(spec.scheduler, optimizer, spec.trainer.epochs)
    settings = FitSettings(spec.trainer, torch.device("cpu"), spec.seed, run_dir=run_dir, resume_from=resume_from)
    result = fit(
        model,
        objective,
        splits,
        optimizer=optimizer,
        scheduler=scheduler,
        settings=settings,
        callbacks=[ShowProgress(progress)] if progress is not None else [],
    )
    return result, model


def test_sigterm_between_two_batches_stops_there_and_resuming_continues_that_batch_exactly(tmp_path: Path) -> None:
    reference, reference_model = fit_digits(tmp_path / "whole")
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match=r"^stopped by SIGTERM in epoch 2, after batch 2 of 7; continue with"):
        fit_digits(tmp_path / "parts", progress=SignalAt(epoch=2, batch=2))
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers are put back
    assert preemption.stop_requested() and preemption.received_signal() == "SIGTERM"
    last = read_last(tmp_path / "parts")
    assert last["epoch"] == 1 and last["partial"]["batches_done"] == 2

    preemption.clear_stop_request()
    point = load_resume_point(tmp_path / "parts", last)
    result, model = fit_digits(tmp_path / "parts", resume_from=point)
    assert [without_times(r) for r in result.history] == [without_times(r) for r in reference.history]
    assert result.selected_epoch == reference.selected_epoch
    for name, tensor in reference_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert read_jsonl(tmp_path / "parts" / "metrics.jsonl") == result.history


def test_resume_cuts_metrics_jsonl_back_to_the_epochs_last_pt_covers(tmp_path: Path) -> None:
    """A kill between an epoch's line and its last.pt leaves a line ahead of last.pt."""
    run_in_process(tmp_path / "whole", *STATEFUL, "trainer.epochs=3")
    run_in_process(tmp_path / "parts", *STATEFUL, "trainer.epochs=3")
    lines = (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "parts" / "checkpoints" / "last.pt").unlink()
    run_in_process(tmp_path / "two", *STATEFUL, "trainer.epochs=2")  # a last.pt at epoch 2 of the same run
    os.replace(tmp_path / "two" / "checkpoints" / "last.pt", tmp_path / "parts" / "checkpoints" / "last.pt")
    (tmp_path / "parts" / "metrics.jsonl").write_text("".join(lines) + '{"epoch": 4, "half a li')
    # checksums.json as that kill leaves it: epoch 2's last.pt, nothing recorded at the end
    checksums = read_json(tmp_path / "parts" / "checksums.json")
    last = read_json(tmp_path / "two" / "checksums.json")["files"]["checkpoints/last.pt"]
    files = {"checkpoints/best.pt": checksums["files"]["checkpoints/best.pt"], "checkpoints/last.pt": last}
    (tmp_path / "parts" / "checksums.json").write_text(json.dumps({**checksums, "files": files}))
    info = read_json(tmp_path / "parts" / "run.json")
    (tmp_path / "parts" / "run.json").write_text(json.dumps({**info, "status": "running"}))

    run_in_process(tmp_path / "parts", *STATEFUL, "trainer.epochs=3", resume=True)
    assert_same_run(tmp_path / "parts", tmp_path / "whole")


def test_resuming_a_completed_run_trains_nothing_and_says_so(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    metrics = run_in_process(run_dir, *DIGITS, "dataset.limit=64")
    before = {name: (run_dir / name).read_bytes() for name in ("run.json", "metrics.json", "metrics.jsonl")}
    console = quiet()
    again = dq.train(compose_config([*DIGITS, "dataset.limit=64"]), run_dir=run_dir, console=console, resume=True)
    assert console.file.getvalue() == f"{run_dir}: already completed; nothing to train\n"
    assert again == json.loads(before["metrics.json"])
    assert without_times(again) == without_times(metrics)
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_a_completed_run_that_stopped_early_stays_stopped_when_epochs_grow(tmp_path: Path) -> None:
    """min_delta 10 means no epoch after the first improves: patience 1 stops at epoch 2."""
    stops = (*DIGITS, "dataset.limit=64", "trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=10")
    run_in_process(tmp_path / "run", *stops, "trainer.epochs=3")
    assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == 2
    console = quiet()
    dq.train(compose_config([*stops, "trainer.epochs=6"]), run_dir=tmp_path / "run", console=console, resume=True)
    assert "early stopping ended it at epoch 2, so trainer.epochs=6 adds nothing" in console.file.getvalue()
    assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "trainer.batch_size=16",
            r"^trainer.batch_size=16 conflicts with the run's saved trainer.batch_size=32; "
            r"when resuming only trainer.epochs may change \(to grow\)$",
        ),
        ("trainer.epochs=1", r"^trainer.epochs=1 is fewer than the run's saved trainer.epochs=2; when resuming"),
        ("scheduler=cosine", r"^scheduler.name=cosine conflicts with the run's saved scheduler.name=none"),
    ],
)
def test_resume_refuses_a_config_that_differs_from_the_saved_one(tmp_path: Path, change: str, message: str) -> None:
    run_in_process(tmp_path / "run", *DIGITS, "dataset.limit=64", "trainer.epochs=2")
    before = (tmp_path / "run" / "run.json").read_bytes()
    with pytest.raises(DQUserError, match=message):
        run_in_process(tmp_path / "run", *DIGITS, "dataset.limit=64", "trainer.epochs=2", change, resume=True)
    assert (tmp_path / "run" / "run.json").read_bytes() == before


def test_epochs_cannot_grow_under_a_schedule_laid_out_over_them(tmp_path: Path) -> None:
    run_in_process(tmp_path / "run", *DIGITS, "dataset.limit=64", "scheduler=cosine")
    with pytest.raises(DQUserError, match=r"^trainer.epochs cannot grow with scheduler=cosine: its curve spans the 1"):
        run_in_process(
            tmp_path / "run", *DIGITS, "dataset.limit=64", "scheduler=cosine", "trainer.epochs=3", resume=True
        )


def test_command_line_overrides_are_checked_against_the_saved_config() -> None:
    """What ``dq-train resume=<dir> <overrides>`` checks: a group by the choice it makes, a
    value by the value; trainer.epochs may grow and then lands in the config resumed."""
    saved = compose_config([*DIGITS, "dataset.limit=64", "trainer.epochs=2", "regularizer=[adversarial]"])
    choices = {"dataset": "digits", "model": "mlp", "scheduler": "none"}
    groups = ["dataset", "model", "scheduler", "optimizer", "hydra/launcher"]

    def resumed(*overrides: str):
        given = compose_config(overrides)
        return resumed_config(saved, given, overrides, saved_choices=choices, group_keys=groups)

    same = resumed("dataset=digits", "model=mlp", "regularizer=[adversarial]", "hydra/launcher=basic")
    assert same == saved
    assert resumed("trainer.epochs=5").trainer.epochs == 5
    with pytest.raises(DQUserError, match=r"^model=cnn conflicts with the run's saved model=mlp;"):
        resumed("model=cnn")
    with pytest.raises(
        DQUserError, match=r"^regularizer=\['fairness'\] conflicts with .* regularizer=\['adversarial'\]"
    ):
        resumed("regularizer=[fairness]")
    with pytest.raises(DQUserError, match=r"^dataset.limit=65 conflicts with the run's saved dataset.limit=64;"):
        resumed("dataset.limit=65")
    with pytest.raises(DQUserError, match=r"^~seed: a resumed run keeps its saved config"):
        resumed("~seed")


def test_resume_refuses_what_is_not_a_run_and_a_missing_or_corrupt_last_pt(tmp_path: Path) -> None:
    cfg = compose_config([*DIGITS, "dataset.limit=64"])
    with pytest.raises(DQUserError, match=rf"^resume={tmp_path / 'nothing'}: no such directory$"):
        dq.train(cfg, run_dir=tmp_path / "nothing", resume=True)
    with pytest.raises(DQUserError, match=rf"^resume={tmp_path} is not a dq run directory \(no .*config.yaml\)$"):
        dq.train(cfg, run_dir=tmp_path, resume=True)

    run_dir = tmp_path / "run"
    run_in_process(run_dir, *DIGITS, "dataset.limit=64")
    info = read_json(run_dir / "run.json")
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:300])
    with pytest.raises(DQUserError, match=rf"^cannot resume: {last} is truncated or not a torch checkpoint \("):
        dq.train(cfg, run_dir=run_dir, resume=True)
    last.unlink()
    with pytest.raises(DQUserError, match=rf"^cannot resume: {last} does not exist"):
        dq.train(cfg, run_dir=run_dir, resume=True)
    assert run_dir.is_dir() and read_json(run_dir / "run.json")["status"] == "interrupted"  # kept as it was


# --- real dq-train processes -----------------------------------------------------------

# About 20 batches an epoch, a few seconds per run: time for a signal to land mid-run.
SUBPROCESS_RUN = (*STATEFUL[:-1], "trainer.epochs=4", "trainer.device=cpu", "trainer.progress=false", "seed=3")


def dq_train_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(dq.__file__).parents[1])}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "dq.cli", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def dq_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    process = dq_train_process(args, cwd)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def started_run(cwd: Path) -> Path:
    """The run directory the one dq-train process started in ``cwd`` made."""
    for _ in range(6000):
        found = [p.parent for p in (cwd / "outputs").glob("*/*/run.json")]
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError("no run started")


def wait_for_epochs(run_dir: Path, count: int, process: subprocess.Popen | None = None) -> None:
    """Until metrics.jsonl has ``count`` lines (or ``process`` has ended)."""
    path = run_dir / "metrics.jsonl"
    for _ in range(60000):
        if path.is_file() and path.read_text().count("\n") >= count:
            return
        if process is not None and process.poll() is not None:
            return
        time.sleep(0.002)
    raise AssertionError(f"{path} never reached {count} lines")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SUBPROCESS_RUN trained start to end, in-process (the same config dq-train composes)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    dq.train(compose_config(SUBPROCESS_RUN, fast=False), run_dir=run_dir, console=quiet())
    return run_dir


def test_sigkill_after_two_epochs_then_resume_gives_the_uninterrupted_result(tmp_path: Path, uninterrupted) -> None:
    process = dq_train_process(list(SUBPROCESS_RUN), tmp_path)
    run_dir = started_run(tmp_path)
    wait_for_epochs(run_dir, 2)
    process.kill()
    process.wait(timeout=60)
    assert read_json(run_dir / "run.json")["status"] == "running"  # SIGKILL leaves no word

    done = dq_train([f"resume={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(run_dir)
    assert [p.name for p in (tmp_path / "outputs" / "default").iterdir()] == [run_dir.name]  # Hydra's fresh dir went
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed" and len(info["resumed"]) == 1
    assert_same_run(run_dir, uninterrupted)


def test_sigterm_exits_75_marked_interrupted_and_resumes_to_the_uninterrupted_result(
    tmp_path: Path, uninterrupted
) -> None:
    process = dq_train_process(list(SUBPROCESS_RUN), tmp_path)
    run_dir = started_run(tmp_path)
    wait_for_epochs(run_dir, 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 75, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.match(
        r"dq-train: interrupted: stopped by SIGTERM (in epoch \d, after batch \d+ of \d+|after epoch \d);", lines[0]
    )
    assert lines[0].endswith(f"; continue with: dq-train resume={run_dir}")
    info = read_json(run_dir / "run.json")
    assert info["status"] == "interrupted" and info["error"] == lines[0].removeprefix("dq-train: interrupted: ")
    assert not (run_dir / "metrics.json").exists()

    done = dq_train([f"resume={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert_same_run(run_dir, uninterrupted)


def test_a_diverging_run_fails_with_one_line_naming_epoch_and_term_and_keeps_its_checkpoints(tmp_path: Path) -> None:
    """lr 1e30 on one batch per epoch: epoch 1's loss is finite (measured before the step),
    the step makes the weights overflow, epoch 2's first batch has a NaN loss (the full
    story, byte-identical checkpoints included, is in test_nonfinite.py)."""
    args = [*DIGITS, "dataset.limit=64", "trainer.batch_size=64", "trainer.epochs=3", "optimizer.lr=1e30"]
    done = dq_train([*args, "trainer.device=cpu", "trainer.progress=false"], tmp_path)
    line = f"epoch 2, batch 1 of 1: training loss term 'task' is nan; {ADVICE}"
    assert done.returncode == 1
    assert done.stderr == f"dq-train: error: {line}\n"
    run_dir = next((tmp_path / "outputs" / "default").iterdir())
    info = read_json(run_dir / "run.json")
    assert info["status"] == "failed" and info["error"] == f"TrainingDiverged: {line}"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert read_last(run_dir)["epoch"] == 1 and len(read_jsonl(run_dir / "metrics.jsonl")) == 1


def test_dq_train_resume_of_a_corrupt_last_pt_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_in_process(run_dir, *DIGITS, "dataset.limit=64")
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    info = read_json(run_dir / "run.json")
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    done = dq_train([f"resume={run_dir}"], tmp_path)
    assert done.returncode == 2
    last = run_dir / "checkpoints" / "last.pt"
    assert (
        done.stderr.startswith(f"dq-train: error: cannot resume: {last} is truncated or not a torch checkpoint (")
        and done.stderr.count("\n") == 1
    )
    assert not list(tmp_path.glob("outputs/*/*"))  # Hydra's directory for this invocation is gone


@pytest.mark.slow
def test_killed_at_random_moments_until_done_ends_as_if_never_killed(tmp_path: Path) -> None:
    """Chaos: SIGKILL or SIGTERM after a random delay (start-up, training, evaluation),
    resume, again, until a run completes; the result is the uninterrupted one."""
    # Adversarial training with FRL-Reweight: slower epochs (time for kills to land inside
    # them), PGD's random starts from the global RNG and the multipliers in last.pt.
    adversarial = ["regularizer=[adversarial,robust_fairness]", "regularizer.adversarial.steps=20"]
    longer = [*SUBPROCESS_RUN, *adversarial, "trainer.epochs=8", "trainer.early_stopping.patience=8"]
    dq.train(compose_config(longer, fast=False), run_dir=tmp_path / "uninterrupted", console=quiet())
    rng = random.Random(8)
    # Kill points: shortly after four random epochs' lines appear (so inside the next epoch,
    # between two writes of an epoch's end, or in the evaluation after the last), in order,
    # so each resumed process is still short of the next one; and once in a resume's start-up.
    targets = sorted(rng.sample(range(1, 9), 4))
    startup_kill_after = rng.randrange(1, len(targets))
    process = dq_train_process(longer, tmp_path)
    run_dir = started_run(tmp_path)
    kills = 0
    for index, epoch in enumerate(targets):
        wait_for_epochs(run_dir, epoch, process)
        time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is None:
            process.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
            kills += 1
        _, stderr = process.communicate(timeout=300)
        # SIGTERM before the handlers are in (start-up) ends the process as the default does.
        assert process.returncode in (0, 75, -signal.SIGKILL, -signal.SIGTERM), stderr
        process = dq_train_process([f"resume={run_dir}"], tmp_path)
        if index == startup_kill_after:  # in the resume's start-up: nothing is lost or marked
            time.sleep(rng.uniform(0.5, 2.0))
            process.send_signal(signal.SIGKILL)
            kills += 1
            process.communicate(timeout=300)
            process = dq_train_process([f"resume={run_dir}"], tmp_path)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert kills >= 4
    assert read_json(run_dir / "run.json")["resumed"]
    assert_same_run(run_dir, tmp_path / "uninterrupted")
