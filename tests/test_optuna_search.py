"""``hparams_search=<name>``: dq's Optuna sweeper. Real sweeps of tiny Adult runs in a
subprocess (`dq-train -m`), read back through Optuna's own storages and the jobs' files;
the search-space grammar and the preset in-process."""

from __future__ import annotations

import csv
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from dq.cli import explain_error
from dq.config import config_dir
from dq.errors import DQUserError
from dq.report import degenerate
from dq.rundir.read import read_json
from dq.spec import register_schemas, to_spec
from dq.sweep.optuna_search import SearchSettings, build_sampler
from dq.sweep.optuna_space import parse_search_space
from dq.sweep.optuna_study import open_storage
from test_imports import loaded_modules

# Tiny Adult runs: two epochs on 200 examples a split, so that trials differ.
SMALL = [
    "regularizer=[fairness]",
    "dataset.limit=200",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "explain.enabled=false",
    "trainer.progress=false",
    "trainer.device=cpu",
]
OBJECTIVES = ["test/accuracy", "test/dp_diff"]


def dq_sweep(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-c", "from dq.cli import train_main; train_main()", "-m", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def dominates(a: list[float], b: list[float]) -> bool:
    """``a`` is no worse than ``b`` on both objectives (accuracy up, DP gap down) and better on one."""
    no_worse = a[0] >= b[0] and a[1] <= b[1]
    return no_worse and (a[0] > b[0] or a[1] < b[1])


def sound(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials the front and the best come from: those not marked degenerate (all when none is sound)."""
    return [t for t in trials if "dq.degenerate" not in t.user_attrs] or trials


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


LAUNCHERS = {
    "basic": [],  # Hydra's own: the jobs of a batch one after another, in the sweep's process
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],  # a batch in two local processes
}


@pytest.mark.parametrize("launcher", ["basic", pytest.param("joblib", marks=pytest.mark.slow)])
def test_nsga2_study_writes_its_pareto_set_with_the_trials_metrics(tmp_path: Path, launcher: str) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    # The default storage is sweep_dir/optuna.db and the study is named after experiment_name;
    # a trial already in it that every real trial beats must stay off the Pareto set.
    study = optuna.create_study(
        storage=f"sqlite:///{sweep_dir}/optuna.db", study_name="default", directions=["maximize", "minimize"]
    )
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=[0.0, 1.0]))

    done = dq_sweep(
        [
            *SMALL,
            "hparams_search=fair_pareto",
            "hydra.sweeper.n_trials=5",  # the one above and four new
            "hydra.sweeper.n_jobs=2",
            "optimizer.lr=tag(log, interval(0.003, 0.3))",  # replaces the preset's range
            "model.hidden=choice([16],[64,32])",
            *LAUNCHERS[launcher],
            f"hydra.sweep.dir={sweep_dir}",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    if launcher == "joblib":  # two batches of two trials, run by the same two workers (kept between batches)
        workers = {read_json(sweep_dir / str(number) / "run.json")["pid"] for number in range(1, 5)}
        assert len(workers) == 2
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # they ended with the sweep

    study = optuna.load_study(storage=f"sqlite:///{sweep_dir}/optuna.db", study_name="default")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4] and len(trials) == 5
    assert study.metric_names == OBJECTIVES
    for trial in trials[1:]:
        # Job N is trial N; Optuna was told exactly what the job wrote to metrics.json.
        run_dir = Path(trial.user_attrs["dq.run_dir"])
        assert run_dir == sweep_dir / str(trial.number)
        metrics = read_json(run_dir / "metrics.json")
        assert trial.values == [metrics[key] for key in OBJECTIVES]
        assert set(trial.params) == {"regularizer.fairness.weight", "optimizer.lr", "model.hidden"}
        assert 0.003 <= trial.params["optimizer.lr"] <= 0.3 and trial.params["model.hidden"] in ("[16]", "[64,32]")
        overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.lr={trial.params['optimizer.lr']}" in overrides
        assert f"model.hidden={trial.params['model.hidden']}" in overrides
        # The trial carries the degenerate marks its metrics earn (none for a sound model).
        assert trial.user_attrs.get("dq.degenerate", []) == degenerate.flags(metrics)

    rows = read_csv(sweep_dir / "pareto.csv")
    assert list(rows[0]) == [
        "trial",
        *OBJECTIVES,
        "regularizer.fairness.weight",
        "optimizer.lr",
        "model.hidden",
        "run_dir",
        "degenerate",
    ]
    front = {int(row["trial"]) for row in rows}
    candidates = sound(trials)
    expected = {t.number for t in candidates if not any(dominates(o.values, t.values) for o in candidates)}
    assert front == expected and 0 not in front
    for row in rows:
        metrics = read_json(Path(row["run_dir"]) / "metrics.json")
        assert [float(row[key]) for key in OBJECTIVES] == [metrics[key] for key in OBJECTIVES]

    best_accuracy = max(candidates, key=lambda t: t.values[0])
    assert (
        f"best test/accuracy (maximize): {best_accuracy.values[0]:.4g} in trial {best_accuracy.number}: " in done.stdout
    )
    assert "best test/dp_diff (minimize): " in done.stdout


def test_failed_trials_are_told_fail_and_the_study_goes_on_in_a_journal_storage(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    done = dq_sweep(
        [
            *SMALL,
            "dataset=adult",
            "model=mlp",
            "trainer.epochs=1",
            "dataset.limit=64",
            "optimizer.lr=choice(0.01,-1)",  # -1 composes, then fails the run's validation
            "hydra/sweeper=dq_optuna",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2",
            f"hydra.sweeper.storage=journal:{journal}",
            "hydra.sweeper.study_name=journal_study",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    # Like any sweep with a failed job: every trial ran, the failures are listed, exit 1.
    assert done.returncode == 1, done.stderr
    study = optuna.load_study(storage=JournalStorage(JournalFileBackend(str(journal))), study_name="journal_study")
    assert len(study.trials) == 4
    states = {t.number: (t.state, t.params["optimizer.lr"]) for t in study.trials}
    assert {state for state, _ in states.values()} == {TrialState.COMPLETE, TrialState.FAIL}, states
    for trial in study.trials:
        if trial.params["optimizer.lr"] == -1:
            assert trial.state == TrialState.FAIL
            assert trial.user_attrs["dq.outcome"] == "failed: optimizer.lr must be > 0, got -1.0"
            assert f"trial {trial.number} FAIL: optimizer.lr must be > 0" in done.stdout
            assert f"dq-train: failed job {trial.number} (" in done.stderr
        else:
            assert trial.state == TrialState.COMPLETE
            metrics = read_json(Path(trial.user_attrs["dq.run_dir"]) / "metrics.json")
            assert trial.values == [metrics["test/accuracy"]]
    # One objective: pareto.csv holds the best trial.
    rows = read_csv(tmp_path / "sweep" / "pareto.csv")
    best = max(sound(study.get_trials(states=(TrialState.COMPLETE,))), key=lambda t: t.value)
    assert [(int(r["trial"]), float(r["test/accuracy"])) for r in rows] == [(best.number, best.value)]


def test_a_restarted_study_fails_trials_a_dead_process_left_running_and_continues(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(storage=storage, study_name="restart", direction="maximize")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = study.ask()  # trial 0: its process has exited
    dead.set_user_attr("dq.host", socket.gethostname())
    dead.set_user_attr("dq.pid", int(gone.stdout))
    alive = study.ask()  # trial 1: this test process is alive, so it stays RUNNING and counts
    alive.set_user_attr("dq.host", socket.gethostname())
    alive.set_user_attr("dq.pid", os.getpid())

    done = dq_sweep(
        [
            *SMALL[1:],
            "dataset=adult",
            "model=mlp",
            "trainer.epochs=1",
            "dataset.limit=64",
            "optimizer.lr=tag(log, interval(0.001, 0.1))",
            "hydra/sweeper=dq_optuna",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=restart",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"trial 0 was left RUNNING by a dead process (pid {int(gone.stdout)}): marked FAIL" in done.stdout
    study = optuna.load_study(storage=storage, study_name="restart")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE]
    assert (tmp_path / "sweep" / "2" / "metrics.json").is_file()  # job 2 is trial 2
    rows = read_csv(tmp_path / "sweep" / "pareto.csv")
    assert [int(row["trial"]) for row in rows] == [2]


def test_an_objective_the_run_never_writes_stops_after_the_first_trial(tmp_path: Path) -> None:
    done = dq_sweep(
        [
            *SMALL[1:],
            "dataset=adult",
            "model=mlp",
            "trainer.epochs=1",
            "dataset.limit=64",
            "optimizer.lr=interval(0.001, 0.01)",
            "hydra/sweeper=dq_optuna",
            "hydra.sweeper.objectives={test/acuracy:maximize}",
            "hydra.sweeper.n_trials=3",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line, line
    assert line.startswith(
        "dq-train: error: objective 'test/acuracy' is not a metric this run writes; its metrics.json has: "
    )
    assert "test/accuracy" in line and "test/dp_diff" in line
    assert not (tmp_path / "sweep" / "1").exists() and not (tmp_path / "sweep" / "pareto.csv").exists()
    study = optuna.load_study(storage=f"sqlite:///{tmp_path}/sweep/optuna.db", study_name="default")
    assert [t.state for t in study.trials] == [TrialState.FAIL]


STORAGE_FORMS = "sqlite:///<file>, journal:<file>, or an SQLAlchemy database URL (postgresql://..., mysql://...)"


@pytest.mark.parametrize(
    "storage", ["sqlite:////no/such/dir/study.db", "journal:/no/such/dir/study.log", "nosuchdb://x"]
)
def test_a_storage_that_cannot_be_opened_is_refused_in_one_line(storage: str) -> None:
    with pytest.raises(DQUserError) as caught:
        open_storage(storage)
    line = str(caught.value)
    assert "\n" not in line, line
    assert line.startswith(f"cannot open storage {storage!r}: ") and line.endswith(f"; allowed: {STORAGE_FORMS}")


def test_dq_train_with_a_bad_storage_exits_2_with_one_line_and_leaves_no_sweep_dir(tmp_path: Path) -> None:
    storage = "sqlite:////no/such/dir/study.db"
    done = dq_sweep(
        [
            "optimizer.lr=interval(0.001, 0.01)",
            "hydra/sweeper=dq_optuna",
            f"hydra.sweeper.storage={storage}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"dq-train: error: cannot open storage {storage!r}: (sqlite3.OperationalError) unable to open database file"
    )
    assert done.stderr.count("\n") == 1 and done.stderr.endswith(f"; allowed: {STORAGE_FORMS}\n")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow  # a subprocess of its own; the fast tests cover the sweeper's paths
def test_a_search_where_no_trial_completes_exits_1_naming_the_failures(tmp_path: Path) -> None:
    done = dq_sweep(
        [
            "optimizer.lr=choice(-1,-2)",  # every trial fails the run's validation
            "hydra/sweeper=dq_optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr == "dq-train: error: no trial of study 'default' completed (2 failed)\n"
    assert "trial 0 FAIL: optimizer.lr must be > 0" in done.stdout
    assert not (tmp_path / "sweep" / "pareto.csv").exists()


def test_bad_sweeper_settings_are_refused_in_one_line() -> None:
    with pytest.raises(
        DQUserError,
        match=r"^bad hydra.sweeper.sampler: hydra.sweeper.sampler._target_='optuna.samplers.Nope' is not allowed; "
        r"allowed: optuna.samplers.<.*NSGAIISampler.*>; e.g. ",
    ):
        build_sampler({"_target_": "optuna.samplers.Nope"}, seed=0)
    assert type(build_sampler(None, seed=3)).__name__ == "TPESampler"
    with pytest.raises(
        DQUserError, match=r"^hydra.sweeper.objectives.test/accuracy must be maximize or minimize, got 'up'$"
    ):
        SearchSettings.from_mapping({"objectives": {"test/accuracy": "up"}})
    with pytest.raises(DQUserError, match=r"^hydra.sweeper.n_jobs must be >= 1, got 0$"):
        SearchSettings.from_mapping({"n_jobs": 0})
    # Unset objectives mean accuracy; null drops a preset's entry.
    assert SearchSettings.from_mapping({}).objectives == {"test/accuracy": "maximize"}
    kept = SearchSettings.from_mapping({"objectives": {"test/accuracy": "maximize", "test/dp_diff": None}})
    assert kept.objectives == {"test/accuracy": "maximize"}


def test_search_space_grammar_becomes_optuna_distributions() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = parse_search_space(
        [
            "optimizer.lr=interval(0.1, 1)",  # a preset's line ...
            "model.hidden=choice([64],[128,64])",
            "trainer.epochs=tag(int, interval(1, 8))",
            "seed=range(0, 10, 3)",
            "dataset=adult",
            "optimizer.lr=tag(log, interval(1e-4, 1e-1))",  # ... replaced by the command line's
            "regularizer.fairness.weight=choice(0, 0.5)",
            "regularizer.fairness.weight=2",  # a plain value fixes the parameter
        ]
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "model.hidden": CategoricalDistribution(["[64]", "[128,64]"]),
        "trainer.epochs": IntDistribution(1, 8),
        "seed": IntDistribution(0, 9, step=3),  # range's end is excluded, as in Hydra's basic sweeper
    }
    assert space.fixed == {"dataset": "dataset=adult", "regularizer.fairness.weight": "regularizer.fairness.weight=2"}
    params = {"optimizer.lr": 0.01, "model.hidden": "[64]", "trainer.epochs": 3, "seed": 6}
    assert space.overrides(params) == [
        "optimizer.lr=0.01",
        "model.hidden=[64]",
        "trainer.epochs=3",
        "seed=6",
        "dataset=adult",
        "regularizer.fairness.weight=2",
    ]
    with pytest.raises(DQUserError, match=r"^bad search space for optimizer.lr: .*"):
        parse_search_space(["optimizer.lr=tag(log, interval(0, 1))"])  # log scale from 0


def compose_with_hydra(overrides: list[str]):
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_fair_pareto_preset_searches_keys_that_exist_and_other_runs_are_untouched() -> None:
    cfg = compose_with_hydra(["+experiment=fair_adult", "hparams_search=fair_pareto"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.dq_optuna_sweeper.sweeper.DQOptunaSweeper"
    assert dict(sweeper.objectives) == {"test/accuracy": "maximize", "test/dp_diff": "minimize"}
    assert sweeper.sampler._target_ == "optuna.samplers.NSGAIISampler"
    space = parse_search_space([f"{key}={value}" for key, value in sweeper.params.items()])
    assert set(space.distributions) == {"regularizer.fairness.weight", "optimizer.lr", "model.hidden"}
    assert space.distributions["optimizer.lr"].log
    # Each end of each range makes a valid adult run.
    for pick in (0, -1):
        params = {}
        for key, distribution in space.distributions.items():
            choices = getattr(distribution, "choices", None)
            params[key] = choices[pick] if choices else (distribution.low, distribution.high)[pick]
        spec = to_spec(compose_with_hydra(["+experiment=fair_adult", *space.overrides(params)]))
        assert spec.dataset.name == "adult" and spec.model.name == "mlp"
        assert math.isclose(spec.optimizer.lr, params["optimizer.lr"])
    # Without a search, the run config is what it was, and +experiment still composes.
    plain = compose_with_hydra(["+experiment=fair_adult"])
    assert plain.hydra.sweeper._target_.endswith("BasicSweeper")
    assert plain.hydra.runtime.choices["hparams_search"] is None
    assert "hydra" in plain and plain.experiment_name == "fair_adult"


def test_group_robust_preset_trades_average_against_worst_group_accuracy_over_keys_that_exist() -> None:
    cfg = compose_with_hydra(["+experiment=group_dro", "hparams_search=group_robust"])
    sweeper = cfg.hydra.sweeper
    assert dict(sweeper.objectives) == {"test/accuracy": "maximize", "test/worst_group_accuracy": "maximize"}
    space = parse_search_space([f"{key}={value}" for key, value in sweeper.params.items()])
    keys = {"regularizer.group_dro.step_size", "regularizer.group_dro.adjustment", "optimizer.weight_decay"}
    assert set(space.distributions) == keys
    for pick in (0, -1):  # each end of each range makes a valid colored_mnist run
        params = {}
        for key, distribution in space.distributions.items():
            choices = getattr(distribution, "choices", None)
            params[key] = choices[pick] if choices else (distribution.low, distribution.high)[pick]
        spec = to_spec(compose_with_hydra(["+experiment=group_dro", *space.overrides(params)]))
        assert spec.dataset.name == "colored_mnist"
        assert math.isclose(spec.regularizer["group_dro"].adjustment, params["regularizer.group_dro.adjustment"])


@pytest.mark.slow  # a subprocess of its own; the fast tests cover the sweeper's paths
def test_a_search_without_multirun_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    command = [sys.executable, "-m", "dq.cli", "hparams_search=fair_pareto"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == (
        "dq-train: error: hparams_search=fair_pareto runs a search: add -m (dq-train -m ... hparams_search=fair_pareto)\n"
    )
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("run.json"))


def test_an_unknown_search_is_one_line_naming_the_presets() -> None:
    with pytest.raises(HydraException) as caught:
        compose_with_hydra(["hparams_search=nope"])
    assert explain_error(caught.value) == "unknown hparams_search 'nope'; allowed: fair_pareto, group_robust"


def test_start_up_loads_no_optuna_and_hydra_lists_the_sweeper(tmp_path: Path) -> None:
    body = "sys.argv = ['dq-train', '--cfg', 'job', 'hparams_search=fair_pareto']\nfrom dq.cli import train_main\ntrain_main()"
    modules = loaded_modules(body, heavy=("optuna",))
    assert "dq.cli" in modules  # the probe really ran the command
    # The sweep callback (dq.sweep.callback) loads on every start; the search's modules do not.
    assert not any(name.split(".")[0] == "optuna" or name.startswith("dq.sweep.optuna") for name in modules), modules
    done = subprocess.run(
        [sys.executable, "-m", "dq.cli", "--info", "plugins"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert "DQOptunaSweeper" in done.stdout
