"""logger=[...]: what TensorBoard and MLflow hold after a real run, read back with each
library's own reader (tensorboard's EventAccumulator, MLflow's client) and compared with
the run's own metrics.jsonl and metrics.json; failures end the tracked run as failed; bad
choices stop with one line before training."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

import dq
from dq.cli import explain_error
from dq.errors import DQUserError
from dq.loggers import LoggerContext, build_loggers, flatten_config
from dq.loggers.mlflow import mlflow_key
from dq.loggers.tensorboard import read_params_markdown
from dq.rundir.read import read_json, read_jsonl

TINY = ("dataset=digits", "model=mlp", "trainer.epochs=2", "explain.enabled=false")
CHEAP_EXPLAIN = (
    "explain.enabled=true",
    "explain.methods=[saliency]",
    "explain.metrics=[sparseness]",
    "explain.n_samples=4",
)
TOL = {"rel": 1e-6, "abs": 1e-6}  # TensorBoard keeps scalars as float32


def expected_params(cfg: DictConfig) -> dict[str, Any]:
    """The config flattened to dot keys, computed here independently of dq.loggers."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        else:
            flat[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def event_accumulator(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def tensorboard_params(accumulator) -> dict[str, Any]:
    from tensorboard.util import tensor_util

    (event,) = accumulator.Tensors("params/text_summary")
    return read_params_markdown(tensor_util.make_ndarray(event.tensor_proto).item().decode())


def mlflow_run(tracking_uri: str, experiment: str = "default"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def test_flatten_config_keeps_lists_and_empty_groups_and_leaves_out_hydra() -> None:
    cfg = OmegaConf.create({"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}, "regularizer": {}, "hydra": {"x": 1}})
    assert flatten_config(cfg) == {"optimizer.lr": 0.1, "optimizer.betas": [0.9, 0.99], "regularizer": {}}
    assert mlflow_key("test/robust_accuracy@0.1") == "test/robust_accuracy_0.1"
    assert mlflow_key("test/group_accuracy/age>=25") == "test/group_accuracy/age__25"


def test_tensorboard_holds_every_epoch_the_final_metrics_and_the_config(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*TINY, "logger=[tensorboard]")
    dq.train(cfg, run_dir=tmp_path / "run")
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")  # written although jsonl is not in the list
    final = read_json(tmp_path / "run" / "metrics.json")
    assert [record["epoch"] for record in epochs] == [1, 2]

    accumulator = event_accumulator(tmp_path / "run" / "tensorboard")
    assert set(accumulator.Tags()["scalars"]) == set(epochs[0]) | set(final)
    for record in epochs:
        for key, value in record.items():
            (event,) = [e for e in accumulator.Scalars(key) if e.step == record["epoch"]]
            assert event.value == pytest.approx(value, **TOL), key
    for key, value in final.items():
        (event,) = accumulator.Scalars(key)
        assert (event.step, event.value) == (2, pytest.approx(value, **TOL)), key
    params = tensorboard_params(accumulator)
    assert params == expected_params(cfg)
    assert params["optimizer.lr"] == cfg.optimizer.lr and params["dataset.name"] == "digits"


def test_mlflow_holds_params_every_epoch_final_metrics_and_artifacts(make_cfg, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = make_cfg(
        *TINY,
        *CHEAP_EXPLAIN,
        "eval.robust.eps=[0.1]",  # test/robust_accuracy@0.1: '@' is no character MLflow takes
        "eval.robust.steps=2",
        "logger=[mlflow]",
        f"logger.mlflow.tracking_uri={uri}",
    )
    run_dir = tmp_path / "runs" / "first"
    dq.train(cfg, run_dir=run_dir)
    epochs = read_jsonl(run_dir / "metrics.jsonl")
    final = read_json(run_dir / "metrics.json")
    assert "test/robust_accuracy@0.1" in final and "explain/saliency/sparseness" in final

    client, run = mlflow_run(uri)
    assert (run.info.status, run.info.run_name) == ("FINISHED", "runs/first")
    assert run.data.tags["dq.run_dir"] == str(run_dir.resolve())
    params = run.data.params
    expected = expected_params(cfg)
    assert set(params) == set(expected)
    for key, value in expected.items():  # a string as it is, anything else as JSON
        assert (params[key] if isinstance(value, str) else json.loads(params[key])) == value, key
    assert params["optimizer.lr"] == str(cfg.optimizer.lr) and params["logger.mlflow.run_name"] == "null"

    for key in epochs[0]:
        history = client.get_metric_history(run.info.run_id, mlflow_key(key))
        assert [(m.step, m.value) for m in history] == [(r["epoch"], r[key]) for r in epochs], key
    for key, value in final.items():
        history = client.get_metric_history(run.info.run_id, mlflow_key(key))
        assert [(m.step, m.value) for m in history] == [(2, value)], key
    assert set(run.data.metrics) == {mlflow_key(key) for key in (*epochs[0], *final)}

    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["explanations", "run.json"]
    pictures = [a.path for a in client.list_artifacts(run.info.run_id, "explanations")]
    assert pictures == ["explanations/saliency.png"]
    logged_run_json = Path(client.download_artifacts(run.info.run_id, "run.json", str(tmp_path)))
    assert read_json(logged_run_json) == read_json(run_dir / "run.json")  # the completed one
    assert read_json(logged_run_json)["status"] == "completed"
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not ./mlruns


def test_tensorboard_and_mlflow_at_once_hold_the_same_numbers(make_cfg, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = make_cfg(*TINY, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", "experiment_name=both")
    dq.train(cfg, run_dir=tmp_path / "run")
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    final = read_json(tmp_path / "run" / "metrics.json")

    accumulator = event_accumulator(tmp_path / "run" / "tensorboard")
    client, run = mlflow_run(uri, experiment="both")
    assert run.info.status == "FINISHED"
    for key in ("train/loss", "val/loss", "val/accuracy", "lr"):
        in_jsonl = [(r["epoch"], r[key]) for r in epochs]
        in_mlflow = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        in_tensorboard = [(e.step, e.value) for e in accumulator.Scalars(key)]
        assert in_mlflow == in_jsonl
        assert in_tensorboard == [(step, pytest.approx(value, **TOL)) for step, value in in_jsonl]
    assert run.data.metrics["test/accuracy"] == final["test/accuracy"]
    assert accumulator.Scalars("test/accuracy")[0].value == pytest.approx(final["test/accuracy"], **TOL)
    assert tensorboard_params(accumulator) == expected_params(cfg)


def test_a_failing_run_ends_failed_in_mlflow_and_closes_tensorboard(make_cfg, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = make_cfg(*TINY, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}")
    closed = io.StringIO()
    closed.close()  # the run's first print fails, after the loggers have started
    with pytest.raises(ValueError, match="closed file"):
        dq.train(cfg, run_dir=tmp_path / "run", console=Console(file=closed))

    assert read_json(tmp_path / "run" / "run.json")["status"] == "failed"
    client, run = mlflow_run(uri)
    assert run.info.status == "FAILED"
    logged_run_json = Path(client.download_artifacts(run.info.run_id, "run.json", str(tmp_path)))
    assert read_json(logged_run_json)["error"].startswith("ValueError: I/O operation on closed file")
    accumulator = event_accumulator(tmp_path / "run" / "tensorboard")  # flushed and closed
    assert "params/text_summary" in accumulator.Tags()["tensors"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("logger=[jsonl,wandb]", "unknown logger 'wandb'; allowed: jsonl, mlflow, tensorboard"),
        (
            "regularizer=[dropout]",
            "unknown regularizer 'dropout'; allowed: adversarial, attribution, distill, fairness, group_dro, lora, ",
        ),
    ],
)
def test_an_unknown_logger_is_one_line_naming_the_allowed_ones(make_cfg, override: str, expected: str) -> None:
    with pytest.raises(HydraException) as caught:
        make_cfg(override)
    assert explain_error(caught.value).startswith(expected)


def test_a_tracking_uri_that_cannot_be_opened_stops_before_training(make_cfg, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    uri = f"sqlite:///{tmp_path / 'a_file' / 'mlflow.db'}"
    cfg = make_cfg(*TINY, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}")
    with pytest.raises(DQUserError) as caught:
        dq.train(cfg, run_dir=tmp_path / "run")
    assert (
        str(caught.value)
        == f"logger.mlflow.tracking_uri={uri!r} cannot be opened: [Errno 17] File exists: '{tmp_path / 'a_file'}'"
    )
    assert not (tmp_path / "run").exists()


def test_dq_train_with_an_unknown_tracking_scheme_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    import subprocess

    args = [*TINY, "logger=[mlflow]", "logger.mlflow.tracking_uri=nosuch://host"]
    command = [sys.executable, "-c", "from dq.cli import train_main; train_main()", *args]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("dq-train:")]
    assert errors == [
        "dq-train: error: logger.mlflow.tracking_uri='nosuch://host' cannot be opened: "
        "Model registry functionality is unavailable; got unsupported URI 'nosuch://host' for model registry data storage"
    ]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "outputs" / "default").exists()


@pytest.mark.parametrize(
    ("name", "hidden"),
    [("mlflow", ("mlflow", "mlflow.tracking")), ("tensorboard", ("tensorboard",))],
)
def test_a_missing_logger_package_names_what_to_install(monkeypatch, tmp_path: Path, name: str, hidden) -> None:
    for module in hidden:  # None in sys.modules: `import module` fails as if it were not installed
        monkeypatch.setitem(sys.modules, module, None)
    spec = dq.spec.to_spec(dq.compose([f"logger=[{name}]"]))
    with pytest.raises(DQUserError, match=r"^logger=\[" + name + r"\] needs .*: pip install 'dq\[loggers\]'$"):
        build_loggers(spec.logger, LoggerContext(tmp_path, "default"))


def test_logger_options_are_checked_with_their_path(make_cfg) -> None:
    with pytest.raises(DQUserError, match=r"^logger.mlflow.tracking_uri must not be empty$"):
        dq.spec.to_spec(make_cfg("logger=[mlflow]", "logger.mlflow.tracking_uri=' '"))
    with pytest.raises(
        DQUserError, match=r"^logger.tensorboard.log_dir must not be empty \(null: <run dir>/tensorboard\)$"
    ):
        dq.spec.to_spec(make_cfg("logger=[tensorboard]", "logger.tensorboard.log_dir=''"))
    with pytest.raises(HydraException) as caught:
        make_cfg("logger=[tensorboard]", "logger.tensorboard.logdir=x")
    assert (
        explain_error(caught.value)
        == "unknown key 'logger.tensorboard.logdir' (nearest: 'logger.tensorboard.log_dir'); keys of logger.tensorboard: log_dir"
    )


OPEN_STORE = """
import sys
from pathlib import Path
from dq.loggers import LoggerContext, build_loggers
from dq.loggers.mlflow import MLflowLoggerConfig
loggers = build_loggers({"mlflow": MLflowLoggerConfig(tracking_uri=sys.argv[1])}, LoggerContext(Path(sys.argv[2]), "par"))
loggers.start({"job": sys.argv[2]})
loggers.log_epoch({"epoch": 1, "val/loss": 0.5})
loggers.close()
"""


@pytest.mark.slow  # three fresh interpreters import mlflow at once: ~45 s on 2 cores
def test_parallel_jobs_opening_a_new_sqlite_store_at_once_all_log(tmp_path: Path) -> None:
    # Without the lock beside the database, jobs of a joblib sweep each ran MLflow's table
    # migrations on the new file and broke it ("table ... already exists").
    import subprocess

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    jobs = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE, uri, str(tmp_path / str(job))], stderr=subprocess.PIPE)
        for job in range(3)
    ]
    errors = [job.communicate(timeout=300)[1].decode() for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], errors
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("par").experiment_id])
    assert sorted(run.data.params["job"] for run in runs) == sorted(str(tmp_path / str(job)) for job in range(3))
    assert all(run.info.status == "FINISHED" and run.data.metrics == {"epoch": 1.0, "val/loss": 0.5} for run in runs)
