"""A hostile or careless command line (issue 21): no input runs code or writes outside its
directory, and every bad input is one line on stderr with exit 2. The payloads are real
(a pickle and a checkpoint that write a marker file when loaded, a YAML file outside
conf/ naming them), and dq-train runs in this process on a real argv."""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dq.config import config_dir
from dq.config.hydra_overrides import SAMPLER_KEY, TARGETS, targets_in
from fuzz_cases import RUN_BASE

FAST = [item for item in RUN_BASE if item != "model=mlp"]  # the fuzz suite's tiny run, any model


class PlantsMarker:
    """Unpickling this writes ``path``: what a malicious pickle or checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "code from a file ran"))


def dq_train(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str]:
    """``dq-train <argv>`` in this process, started in ``cwd``: (exit code, stderr)."""
    from dq.cli import train_main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["dq-train", *argv])
    capsys.readouterr()
    try:
        train_main()
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    finally:
        torch.set_num_threads(1)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, expected: str) -> None:
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dq-train: error: "), (code, err)
    assert "Traceback" not in err and re.search(expected, lines[0]), lines[0]


def written(root: Path, inside: Path) -> list[str]:
    """Every file under ``root`` that is not under ``inside``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and inside not in p.parents)


@pytest.fixture
def payloads(tmp_path: Path) -> dict[str, Path]:
    """A marker path, a checkpoint that writes it when torch.load runs without weights_only,
    a pickle that writes it when unpickled, and the directory dq-train starts in."""
    marker = tmp_path / "marker"
    torch.save({"model": PlantsMarker(marker)}, tmp_path / "evil.pt")
    (tmp_path / "config.pickle").write_bytes(pickle.dumps(PlantsMarker(marker)))
    work = tmp_path / "a" / "b" / "c" / "work"
    work.mkdir(parents=True)
    return {"marker": marker, "evil.pt": tmp_path / "evil.pt", "pickle": tmp_path / "config.pickle", "work": work}


def test_the_payloads_do_run_code_when_loaded(payloads: dict[str, Path]) -> None:
    """The traps work: loading either file writes the marker."""
    torch.load(payloads["evil.pt"], weights_only=False)
    assert payloads["marker"].exists()
    payloads["marker"].unlink()
    pickle.loads(payloads["pickle"].read_bytes())
    assert payloads["marker"].exists()


def callback_at(evil: Path) -> str:
    return f"{{_target_: torch.load, f: '{evil}', weights_only: false}}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--experimental-rerun", "{pickle}"], r"--experimental-rerun unpickles a file"),
        (
            ["+hydra.callbacks.x={callback}"],
            r"override .\+hydra.callbacks.x=.* may not change Hydra's settings; allowed: hydra.run.dir",
        ),
        (["hydra.launcher._target_=torch.load"], r"may not change Hydra's settings"),
        (["++hydra.sweeper.sampler={callback}"], r"may not change Hydra's settings"),
        (
            ["-m", "hydra.sweeper.params.hydra.job.env_set.LD_PRELOAD={pickle}"],
            r"'hydra.job.env_set.LD_PRELOAD=.*' may not change",
        ),
        (["+experiment={trav}"], r"^dq-train: error: experiment='\.\./.*' is not a plain name .*allowed: adv_digits"),
        (["--config-dir", "{yaml_dir}", "+experiment=trav"], r"--config-dir loads configs from outside dq's conf/"),
    ],
    ids=["rerun", "callback", "launcher", "sampler-add", "sweep-params", "experiment-path", "config-dir"],
)
def test_no_input_runs_code(argv: list[str], expected: str, payloads, monkeypatch, capsys) -> None:
    yaml_dir = payloads["work"].parent.parent.parent / "conf_elsewhere" / "experiment"
    yaml_dir.mkdir(parents=True)
    (yaml_dir / "trav.yaml").write_text(
        f"# @package _global_\nhydra:\n  callbacks:\n    x: {callback_at(payloads['evil.pt'])}\n"
    )
    trav = os.path.relpath(yaml_dir / "trav", Path(config_dir()) / "experiment")
    values = {"pickle": payloads["pickle"], "callback": callback_at(payloads["evil.pt"]), "trav": trav}
    argv = [arg.format(**values, yaml_dir=yaml_dir.parent) for arg in argv]
    code, err = dq_train([*argv, *FAST], payloads["work"], monkeypatch, capsys)
    assert_one_line(code, err, expected)
    assert not payloads["marker"].exists()
    assert list(payloads["work"].iterdir()) == []


@pytest.mark.parametrize(
    "override",
    [
        "hydra.output_subdir=../../..",
        "hydra.job.name=../../x",
        "hydra.sweep.subdir=../../x",
        "hydra.run.dir=run hydra.job.chdir=true",
    ],
)
def test_hydras_files_stay_inside_the_run_directory(override: str, payloads, monkeypatch, capsys) -> None:
    root = payloads["marker"].parent
    code, err = dq_train([*FAST, *override.split()], payloads["work"], monkeypatch, capsys)
    assert_one_line(
        code, err, r"may not change Hydra's settings; allowed: hydra.run.dir, hydra.sweep.dir, hydra.launcher"
    )
    assert written(root, payloads["work"]) == ["config.pickle", "evil.pt"]


LONG = "x" * 300
REFUSED = [
    *[
        (f"{group}=null", rf"^dq-train: error: {group}=null: {group} needs a choice")
        for group in (
            "dataset",
            "model",
            "optimizer",
            "trainer",
            "logger",
            "explain",
            "eval",
            "scheduler",
            "regularizer",
        )
    ],
    (
        "optimizer.lr=1e38",
        r"optimizer.lr must be <= 3.4e\+37 \(lr / \(1 - betas\[0\]\), Adam's first step, .*got 1e\+38$",
    ),
    ("optimizer=sgd optimizer.lr=1e39", r"optimizer.lr must be <= 3.4e\+38 \(the step size must stay within float32"),
    ("dataset=adult model=mlp seed=-1", r"seed must be an integer within \[0, 4294967295\], got -1$"),
    ("seed=4294967296", r"seed must be an integer within \[0, 4294967295\]"),
    ("seed=" + "9" * 5000, r"cannot read the command line's overrides: Exceeds the limit \(4300 digits\)"),
    ("eval.bootstrap=1000000000000", r"eval.bootstrap must be in \[0, 10000\]"),
    ("model=mlp model.hidden=[99999999999]", r"model mlp has 7,499,999,999,935 parameters: training needs about"),
    ("model=mlp model.hidden=[4611686018427387904,4611686018427387904]", r"model mlp: its sizes cannot be built"),
    ("hydra.job_logging.root.level=NOPE", r"'hydra.job_logging.root.level=NOPE' may not change Hydra's settings"),
    (f"experiment_name={LONG}", r"experiment_name must be a folder name of 1 to 100"),
    (f"+experiment={LONG}", r"is not a plain name"),
    ("--cfg bogus", r"argument --cfg/-c: invalid choice: 'bogus' \(choose from 'job', 'hydra', 'all'\)"),
    ("--bogus-flag", r"unrecognized arguments: --bogus-flag"),
    ("seed=1 -m", r"unrecognized arguments: .*an override after the flags"),
    (
        "-p nope --cfg job",
        r"--package 'nope' is no node of the config that --cfg job prints; its top-level nodes: dataset",
    ),
    ("explain.methods=[magic]", r"explain.methods holds an unknown explain method 'magic'; allowed: deeplift"),
    ("dataset=../../conf/dataset/digits", r"dataset='../../conf/dataset/digits' is not a plain name"),
    (
        "hydra/launcher=ray",
        r"hydra/launcher='ray': dq runs only the plugins it ships presets for; allowed: basic, dq_processes, joblib",
    ),
    # found by the fuzzing of Hydra's grammar (tests/test_fuzz_config.py)
    ("--resolve", r"--resolve only goes with --cfg or --help"),
    ("experiment_name='${oc.decode:1}'", r"bad value for experiment_name: .*`oc.decode` can only take strings"),
    ("experiment_name=${nope:x}", r"bad value for experiment_name: Unsupported interpolation type nope"),
]


@pytest.mark.parametrize(("override", "expected"), REFUSED, ids=[o[:40] for o, _ in REFUSED])
def test_bad_input_is_one_line_and_exit_2(override: str, expected: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """Each of these was a traceback, a multi-line usage, exit 1 or accepted on main. No
    hydra.run.dir: Hydra's default outputs/<experiment_name>/... is where it would write."""
    argv = [*FAST, *override.split()] if not override.startswith("seed=1 -m") else ["seed=1", "-m", *FAST]
    code, err = dq_train(argv, tmp_path, monkeypatch, capsys)
    assert_one_line(code, err, expected)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # a refused run leaves no file


def test_the_allowed_hydra_settings_still_work(tmp_path: Path, monkeypatch, capsys) -> None:
    """What the allow-list is for: a sweep's directory, its launcher, Hydra's debug logging."""
    code, err = dq_train(
        [
            "-m",
            *FAST,
            "seed=0",
            f"hydra.sweep.dir={tmp_path}/sweep",
            "hydra/launcher=basic",
            "hydra.verbose=false",
        ],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "sweep" / "0" / "metrics.json").is_file()


def test_the_target_allow_list_holds_every_target_dq_ships() -> None:
    """Every _target_ in the composed config of each launcher and search preset (Hydra's own
    node included) is on the allow-list that docs/guides/running.md states."""
    from hydra import compose, initialize_config_dir

    from dq.spec import register_schemas

    register_schemas()
    found = set()
    for choice in [
        "launcher=local",
        "launcher=joblib",
        "hydra/launcher=joblib",  # Hydra's own joblib launcher, selected by name (no preset since dq_processes)
        "launcher=slurm",
        "launcher=submitit_local",
        "hparams_search=fair_pareto",
    ]:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=[choice], return_hydra_config=True)
        for where, target in targets_in(OmegaConf.to_container(cfg, resolve=False), "cfg"):
            found.add(target)
            assert target in TARGETS or where.startswith(f"cfg.{SAMPLER_KEY}."), (choice, where, target)
    assert found == {*TARGETS, "optuna.samplers.NSGAIISampler"}


def test_the_explain_names_of_the_schema_are_the_registries() -> None:
    from dq.config.explain import METHOD_NAMES, METRIC_NAMES
    from dq.explain.methods import METHODS
    from dq.explain.quality import METRICS

    assert sorted(METHOD_NAMES) == sorted(entry.name for entry in METHODS)
    assert sorted(METRIC_NAMES) == sorted(METRICS)
