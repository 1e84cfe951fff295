"""The command line: one-line errors for bad input (in-process), and the real dq-train
command in a subprocess (kept to a few runs: each pays torch's import)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException

from dq.cli import explain_error
from dq.rundir.read import read_json


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("dataset=imagenet", r"^unknown dataset 'imagenet'; allowed: .*adult.*mnist5k"),
        (
            "model=resnet",
            r"^unknown model 'resnet'; allowed: attention, cnn, mlp, preact_resnet18, rnn, text_encoder, torchvision, wide_resnet$",
        ),
        (
            "trainer.epochz=3",
            r"^unknown key 'trainer.epochz' \(nearest: 'trainer.epochs'\); keys of trainer: epochs, batch_size",
        ),
        ("trainer.epochs=ten", r"^bad value for trainer.epochs: Value 'ten' of type 'str' could not be converted"),
        (
            "trainer.device=gpu",
            r"^bad value for trainer.device: Invalid value 'gpu', expected one of \[auto, cpu, cuda\]",
        ),
        # Each dataset family has its own schema: an option this dataset does not use is refused.
        (
            "dataset=adult dataset.max_length=5",
            r"^unknown key 'dataset.max_length'( \(nearest: '[a-z_.]+'\))?; keys of dataset: name, limit, ",
        ),
        (
            "dataset=digits dataset.sensitive=sex",
            r"^unknown key 'dataset.sensitive'( \(nearest: '[a-z_.]+'\))?; keys of dataset: .*root, download, group$",
        ),
    ],
)
def test_composition_errors_become_one_line(make_cfg, override: str, expected: str) -> None:
    with pytest.raises(HydraException) as caught:
        make_cfg(*override.split())
    line = explain_error(caught.value)
    assert "\n" not in line
    assert re.search(expected, line), line


def dq_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-c", "from dq.cli import train_main; train_main()", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_dq_train_command_runs_and_prints_the_run_dir_last(tmp_path: Path) -> None:
    done = dq_train(
        ["dataset=digits", "model=mlp", "trainer.epochs=1", "dataset.limit=100", "trainer.device=cpu"], tmp_path
    )
    assert done.returncode == 0, done.stderr
    last_line = done.stdout.strip().splitlines()[-1]
    run_dir = Path(last_line)
    assert run_dir.parent == tmp_path / "outputs" / "default"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{6}_[A-Za-z0-9-]+-\d+", run_dir.name), last_line
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert "test/accuracy" in read_json(run_dir / "metrics.json")
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert "test metrics" in done.stdout


def test_dq_train_bad_input_prints_one_line_and_leaves_no_result(tmp_path: Path) -> None:
    done = dq_train(["optimizer.lr=-1", "dataset=digits"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "dq-train: error: optimizer.lr must be > 0, got -1.0"
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("run.json"))


def test_dq_train_cfg_job_prints_the_config_and_trains_nothing(tmp_path: Path) -> None:
    done = dq_train(["--cfg", "job", "dataset=adult", "model=mlp"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "name: adult" in done.stdout and "sensitive: sex" in done.stdout
    assert not (tmp_path / "outputs").exists()


def test_two_modes_at_once_are_one_line_not_a_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    # Hydra refuses `-m` with `--cfg` by a ValueError before any job: dq-train says so in one line.
    from dq.cli import train_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["dq-train", "-m", "seed=0,1", "--cfg", "job"])
    with pytest.raises(SystemExit) as stopped:
        train_main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "dq-train: error: Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified"
        " (one at a time)\n"
    )
    assert not (tmp_path / "outputs").exists()


TRAINER_KEYS = (
    "epochs, batch_size, eval_batch_size, device, amp, amp_dtype, grad_clip, early_stopping, select, "
    "num_threads, loader, num_workers, checkpoints, progress, nonfinite, devices, compile, channels_last"
)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # Hydra lets `+`/`++` add a key the schema lacks; validation refuses it, naming the nearest.
        (
            ["+trainer.epochz=3"],
            f"unknown key 'trainer.epochz' (nearest: 'trainer.epochs'); keys of trainer: {TRAINER_KEYS}",
        ),
        (
            ["++trainer.epochz=3"],
            f"unknown key 'trainer.epochz' (nearest: 'trainer.epochs'); keys of trainer: {TRAINER_KEYS}",
        ),
        (
            ["+trainer.early_stopping.patiense=2"],
            "unknown key 'trainer.early_stopping.patiense' (nearest: 'trainer.early_stopping.patience'); "
            "keys of trainer.early_stopping: enabled, monitor, mode, patience, min_delta",
        ),
        (
            ["+nonexistent_key=1"],
            "unknown key 'nonexistent_key'; keys of the config: dataset, model, optimizer, scheduler, trainer, "
            "regularizer, eval, explain, report, logger, seed, experiment_name, resume, compress",
        ),
        (
            ["dataset=adult", "model=mlp", "regularizer=[fairness]", "+regularizer.fairness.wieght=2"],
            "unknown key 'regularizer.fairness.wieght' (nearest: 'regularizer.fairness.weight'); "
            "keys of regularizer.fairness: weight, criterion",
        ),
    ],
)
def test_keys_added_with_plus_are_refused_naming_the_nearest_valid_key(overrides: list[str], expected: str) -> None:
    from dq.errors import DQUserError
    from dq.spec import compose, to_spec

    with pytest.raises(DQUserError) as refused:
        to_spec(compose(overrides))
    assert str(refused.value) == expected
