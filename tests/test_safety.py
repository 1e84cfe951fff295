"""Nothing runs code from a file it reads (issue 11, point 8): checkpoints load with
``weights_only=True``, NumPy never unpickles, no config value reaches a shell, and
``_target_`` instantiation is limited to an allow-list."""

from __future__ import annotations

import ast
import functools
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console

import dq
from conftest import compose_config
from dq.errors import DQUserError
from dq.rundir.layout import HYDRA_DIR, checkpoint_dir

SRC = Path(dq.__file__).resolve().parent


class PlantsMarker:
    """Unpickling this writes ``path``: what a malicious checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "code from a checkpoint ran"))


def test_the_planted_object_does_run_code_when_unpickled_without_weights_only(tmp_path: Path) -> None:
    """The trap works: without weights_only, loading the file writes the marker."""
    marker = tmp_path / "marker"
    torch.save({"model": PlantsMarker(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.read_text() == "code from a checkpoint ran"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("safety") / "run"
    cfg = compose_config(["dataset=digits", "model=mlp", "explain.enabled=false", "trainer.epochs=2"])
    dq.train(cfg, run_dir=run_dir, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    return run_dir


def planted(tiny_run: Path, target: Path, name: str) -> tuple[Path, Path]:
    """A copy of the run whose checkpoints/<name> unpickles into code writing a marker."""
    run_dir = shutil.copytree(tiny_run, target / "run")
    marker = target / "marker"
    state = torch.load(checkpoint_dir(run_dir) / name, weights_only=True)
    state["model"] = PlantsMarker(marker)
    torch.save(state, checkpoint_dir(run_dir) / name)
    return run_dir, marker


def assert_refused_in_one_line(error: DQUserError, name: str) -> None:
    line = str(error)
    assert "\n" not in line and name in line and "weights_only" in line, line


def test_load_run_refuses_a_checkpoint_that_holds_code(tiny_run: Path, tmp_path: Path) -> None:
    run_dir, marker = planted(tiny_run, tmp_path, "best.pt")
    with pytest.raises(DQUserError) as refused:
        dq.load_run(run_dir)
    assert_refused_in_one_line(refused.value, "best.pt")
    assert not marker.exists()


def test_dq_explain_refuses_a_checkpoint_that_holds_code(tiny_run: Path, tmp_path: Path, capsys) -> None:
    from dq.cli import explain_main

    run_dir, marker = planted(tiny_run, tmp_path, "best.pt")
    with pytest.raises(SystemExit) as exited:
        explain_main([str(run_dir), "explain.methods=[saliency]", "explain.metrics=[sparseness]"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "best.pt" in err and "weights_only" in err, err
    assert not marker.exists()


def test_resume_refuses_a_last_checkpoint_that_holds_code(tiny_run: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    run_dir, marker = planted(tiny_run, tmp_path, "last.pt")
    cfg = OmegaConf.load(run_dir / HYDRA_DIR / "config.yaml")
    cfg.trainer.epochs = 3  # grow, so that the run continues from last.pt
    with pytest.raises(DQUserError) as refused:
        dq.train(cfg, run_dir=run_dir, resume=True, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115
    assert_refused_in_one_line(refused.value, "last.pt")
    assert not marker.exists()


# ------------------------------------------------------------- _target_ instantiation


@pytest.mark.parametrize(
    ("node", "refused"),
    [
        ({"_target_": "os.system", "command": "touch {marker}"}, "hydra.sweeper.sampler._target_='os.system'"),
        ({"_target_": "pathlib.Path.touch", "self": "{marker}"}, "'pathlib.Path.touch'"),
        ({"_target_": "optuna.samplers.BaseSampler"}, "'optuna.samplers.BaseSampler'"),
        (
            {"_target_": "optuna.samplers.TPESampler", "seed": 0, "gamma": {"_target_": "os.system", "x": "{marker}"}},
            "hydra.sweeper.sampler.gamma._target_='os.system'",
        ),
        (
            {"_target_": "optuna.samplers.NSGAIISampler", "constraints_func": [{"_target_": "builtins.exec"}]},
            "hydra.sweeper.sampler.constraints_func[0]._target_='builtins.exec'",
        ),
    ],
)
def test_a_sampler_target_outside_optunas_samplers_is_refused(node: dict, refused: str, tmp_path: Path) -> None:
    from dq.sweep.optuna_search import build_sampler

    marker = tmp_path / "marker"
    node = {key: value.format(marker=marker) if isinstance(value, str) else value for key, value in node.items()}
    with pytest.raises(DQUserError) as error:
        build_sampler(node, seed=0)
    line = str(error.value)
    assert "\n" not in line and refused in line and "allowed: optuna.samplers.<" in line and "NSGAIISampler" in line
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:SBXCrossover is experimental")
def test_optunas_samplers_and_their_parts_are_built() -> None:
    from dq.sweep.optuna_search import build_sampler

    crossover = {"_target_": "optuna.samplers.nsgaii.SBXCrossover"}
    sampler = build_sampler({"_target_": "optuna.samplers.NSGAIISampler", "seed": 1, "crossover": crossover}, seed=0)
    assert type(sampler).__name__ == "NSGAIISampler"
    assert type(build_sampler({"_target_": "optuna.samplers.RandomSampler"}, seed=0)).__name__ == "RandomSampler"


def test_instantiate_is_called_nowhere_else() -> None:
    """Hydra instantiates the sweep callback named in conf/config.yaml itself; in dq's own
    code, only the sampler (behind its allow-list) comes from a config's _target_."""
    users = sorted(
        f"{path.relative_to(SRC)}" for name in ("instantiate", "hydra.utils.instantiate") for path, _ in calls(name)
    )
    assert users == ["sweep/optuna_search.py"]


@pytest.mark.parametrize(
    "override",
    [
        "hydra.callbacks.x._target_=os.system",
        "+hydra.callbacks.evil={_target_: builtins.exec}",
        "++hydra.job.env_set.LD_PRELOAD=/tmp/x.so",
        "hydra/launcher=joblib",
        "+model._target_=os.system",
    ],
)
def test_a_paper_table_cannot_name_code_to_run(override: str, tmp_path: Path) -> None:
    """A committed paper config's overrides go to dq-train: none may set hydra's own settings
    (callbacks, launchers, environment) nor any _target_."""
    from dq.paper.load import load_table, tables_dir

    text = (tables_dir() / "fair_adult.yaml").read_text()
    (tmp_path / "fair_adult.yaml").write_text(
        text.replace("  - trainer.epochs=10\n", f"  - trainer.epochs=10\n  - '{override}'\n")
    )
    assert override in (tmp_path / "fair_adult.yaml").read_text()
    with pytest.raises(DQUserError) as refused:
        load_table("fair_adult", tmp_path)
    line = str(refused.value)
    assert "\n" not in line and override in line and "may not" in line, line
    assert load_table("fair_adult").name == "fair_adult"  # the committed one loads


# ------------------------------------------------------------------ scans of the source


@functools.cache
def source_calls() -> list[tuple[Path, ast.Call, str]]:
    """Every call in src/dq, with the file it is in and its function as spelt there."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                found.append((path, node, ast.unparse(node.func)))
    return found


def calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call in src/dq whose function is spelt ``name`` (``torch.load``, ``np.load``)."""
    return [(path, node) for path, node, func in source_calls() if func == name]


def keyword(call: ast.Call, name: str) -> str | None:
    return next((ast.unparse(k.value) for k in call.keywords if k.arg == name), None)


def test_every_torch_load_uses_weights_only() -> None:
    loads = calls("torch.load")
    assert loads, "the scan finds dq.rundir.read.load_checkpoint's call"
    assert all(keyword(call, "weights_only") == "True" for _, call in loads), loads


def test_every_numpy_load_refuses_pickles() -> None:
    """No np.load may unpickle: allow_pickle=False, spelt out (its default has changed before)."""
    for spelling in ("np.load", "numpy.load"):
        for path, call in calls(spelling):
            assert keyword(call, "allow_pickle") == "False", f"{path}:{call.lineno}"


def test_an_explanation_file_holding_a_pickle_is_refused_by_numpy(tmp_path: Path) -> None:
    """What allow_pickle=False buys: an object array in an .npz is refused, not unpickled."""
    import numpy as np

    marker = tmp_path / "marker"
    np.savez(tmp_path / "saliency.npz", attributions=np.array([PlantsMarker(marker)], dtype=object))
    with np.load(tmp_path / "saliency.npz", allow_pickle=False) as arrays, pytest.raises(ValueError, match="pickle"):
        arrays["attributions"]
    assert not marker.exists()


def test_no_shell_is_ever_started() -> None:
    """No shell=True, os.system, os.popen or commands.* in src/dq: a config value can reach
    a subprocess only as one argument of an argument list."""
    offenders = []
    for path, node, func in source_calls():
        if func in ("os.system", "os.popen", "os.execl", "os.spawnl", "pty.spawn") or func.startswith("commands."):
            offenders.append(f"{path.name}:{node.lineno} {func}")
        if keyword(node, "shell") not in (None, "False"):
            offenders.append(f"{path.name}:{node.lineno} shell={keyword(node, 'shell')}")
        if func.startswith("subprocess.") and node.args and not isinstance(node.args[0], ast.List | ast.Name):
            offenders.append(f"{path.name}:{node.lineno} {func} with a command that is not a list")
    assert offenders == []


@pytest.mark.slow
@pytest.mark.parametrize("value", ["x; touch {marker}", "'x; touch {marker}'", "$(touch {marker})"])
def test_a_paper_table_override_with_shell_syntax_runs_no_shell(value: str, tmp_path: Path, monkeypatch) -> None:
    """dq.paper.launch passes each override as one argument of dq-train: `; touch marker`
    is a value that dq-train refuses (Hydra's grammar or the schema), never a command."""
    from dq.paper.launch import sweep
    from dq.paper.slots import Slots

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    override = "experiment_name=" + value.format(marker=marker)
    slots, codes = Slots(1), []
    sweep([override], [0], tmp_path / "sweep", tmp_path / "log.txt", slots, codes.append)
    slots.wait_all()
    code = codes[0]
    log = (tmp_path / "log.txt").read_text()
    # Hydra's grammar refuses the sweep (exit 2); a quoted value reaches the job, which fails (exit 1)
    assert code in (1, 2) and "Traceback" not in log, log
    assert "cannot parse override 'experiment_name=" in log or "experiment_name must be a folder name" in log
    assert not marker.exists()


def test_inputs_are_unpickled_nowhere() -> None:
    """No pickle.load(s), yaml.load (unsafe loader), eval or exec in src/dq."""
    banned = {"pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "eval", "exec", "marshal.loads"}
    found = [f"{path.name}:{call.lineno}" for name in banned for path, call in calls(name)]
    assert found == []


def test_pickle_is_what_the_trap_uses() -> None:
    assert pickle.dumps(PlantsMarker(Path("x")))  # the marker class pickles (a guard on the tests above)


def test_dq_report_escapes_a_hostile_experiment_name_and_metric_on_every_page(tiny_run: Path, tmp_path: Path) -> None:
    """A run whose saved config and metrics carry markup (dq-train refuses such an
    experiment_name, but a file can be edited): dq-report's pages show it as text."""
    import json

    from dq.report.command import main

    hostile = "<script>alert(1)</script>"
    runs = tmp_path / "runs"
    run_dir = shutil.copytree(tiny_run, runs / "run")
    config = run_dir / HYDRA_DIR / "config.yaml"
    config.write_text(config.read_text().replace("experiment_name: default", f"experiment_name: '{hostile}'"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, f"test/{hostile}": 0.5}))
    (run_dir / "checksums.json").unlink()  # edited by hand: read unchecked, as a run from before checksums
    main([str(runs), "--out", str(tmp_path / "report")])
    pages = sorted((tmp_path / "report").rglob("*.html"))
    assert pages and all("<script" not in page.read_text() for page in pages)
    assert any("&lt;script&gt;" in page.read_text() for page in pages)
