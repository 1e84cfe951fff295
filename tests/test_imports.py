"""Imports stay light and point one way: ``import dq`` loads no torch, a term or a model
loads no heavy library and no other part, and ``dq-train --help`` / ``--cfg job`` load
no captum, scikit-learn or matplotlib. Each check runs in a fresh interpreter, since
this test process has long imported everything. (The arrows between dq's own parts are
checked by import-linter's contracts in ``make lint``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("captum", "sklearn", "matplotlib", "pandas", "fairlearn", "scipy")
PROBE = """
import atexit, json, sys
def report():
    names = sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r} or name.startswith("dq."))
    sys.stderr.write("\\nMODULES " + json.dumps(names) + "\\n")
atexit.register(report)
{body}
"""


def loaded_modules(
    body: str, heavy: tuple[str, ...] = (*HEAVY, "torch"), env: dict[str, str] | None = None
) -> set[str]:
    """The dq modules and the ``heavy`` packages (and their submodules) that ``body`` loads."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=set(heavy), body=body)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules if not name.startswith("dq")}


def test_import_dq_loads_no_torch_and_no_heavy_library() -> None:
    modules = loaded_modules("import dq")
    assert top_level(modules) == set()
    assert modules == set(), modules  # not even dq's own submodules: train and load_run are lazy


def test_dq_compose_train_and_load_run_are_there_when_asked_for() -> None:
    # docs/guides/python.md: a fresh process composes without registering anything by hand.
    body = "import dq\nassert dq.compose(['dataset=adult', 'model=mlp']).dataset.sensitive == 'sex'\nassert callable(dq.train) and callable(dq.load_run)"
    modules = loaded_modules(body)
    assert {"dq.spec", "dq.runner", "dq.rundir.load"} <= modules


TERMS_AND_MODELS = [
    "dq.objectives.fairness",
    "dq.objectives.adversarial",
    "dq.objectives.attribution",
    "dq.objectives.lora",
    "dq.objectives.distill",
    "dq.models.mlp",
    "dq.models.cnn",
    "dq.models.rnn",
    "dq.models.attention",
    "dq.models.text_encoder",
    "dq.data_records",
]


def test_a_term_or_a_model_loads_no_heavy_library_and_no_other_part() -> None:
    # One interpreter imports them all: what the union loads bounds what each one loads.
    modules = loaded_modules("\n".join(f"import {module}" for module in TERMS_AND_MODELS))
    assert set(TERMS_AND_MODELS) <= modules
    assert top_level(modules) <= {"torch"}
    others = {m for m in modules if m.startswith(("dq.engine", "dq.explain", "dq.metrics", "dq.runner", "dq.spec"))}
    families = {m for m in modules if m in {"dq.data.images", "dq.data.tabular", "dq.data.text", "dq.data.series"}}
    assert others == set() and families == set(), (others, families)


@pytest.mark.parametrize("flag", ["--help", "--cfg job"])
def test_dq_train_help_and_cfg_load_no_captum_sklearn_or_matplotlib(flag: str) -> None:
    body = f"sys.argv = ['dq-train', *{flag.split()!r}]\nfrom dq.cli import train_main\ntrain_main()"
    modules = loaded_modules(body)
    assert "dq.cli" in modules  # the probe really ran the command
    assert top_level(modules) & {"captum", "sklearn", "matplotlib", "pandas", "fairlearn"} == set()
    # dq.engine.preemption (signal and threading only) turns a stop signal into a stop request
    # from dq-train's start: a Ctrl-C during start-up is an interruption too.
    engine = {m for m in modules if m.startswith(("dq.engine", "dq.explain", "dq.runner"))}
    assert engine <= {"dq.engine", "dq.engine.preemption"}, engine


def test_dq_train_cfg_with_every_logger_loads_neither_tensorboard_nor_mlflow() -> None:
    # Selecting a logger checks its schema only; its package loads when a run starts.
    body = "sys.argv = ['dq-train', '--cfg', 'job', 'logger=[jsonl,tensorboard,mlflow]']\nfrom dq.cli import train_main\ntrain_main()"
    modules = loaded_modules(body, heavy=("tensorboard", "mlflow", "sqlalchemy", "alembic"))
    assert {"dq.cli", "dq.loggers.tensorboard", "dq.loggers.mlflow"} <= modules  # the registry found them
    assert top_level(modules) == set()


def test_a_second_run_loads_its_data_and_evaluates_without_sklearn_scipy_pandas(tmp_path: Path) -> None:
    # The split's indices come from dq's array cache once drawn (dq.data.splitting), and
    # fairlearn loads only for data with groups: a run without groups needs none of them.
    env = {**os.environ, "DQ_CACHE_DIR": str(tmp_path / "cache")}
    body = (
        "from dq import data\nfrom dq.data.registry import dataset_config\nimport dq.runner\n"
        "splits = data.build(dataset_config('mnist5k', limit=100), 0)\nassert len(splits.train) == 100"
    )
    first = loaded_modules(body, env=env)
    assert {"sklearn", "pandas"} <= top_level(first)  # parsed and split: the cache was empty
    second = loaded_modules(body, env=env)
    assert "dq.runner" in second and top_level(second) == {"torch"}


def test_a_single_runs_report_modules_load_no_pandas() -> None:
    # dq-train writes report.html, model_card.md and plots/curves.png at the end of every run:
    # its figure reads metrics.jsonl's rows directly; only the many-run figures load pandas.
    body = "import dq.report.run_report, dq.report.html, dq.report.model_card\nfrom dq.report.plots import curves, groups, robustness"
    modules = loaded_modules(body)
    assert "dq.report.plots.curves" in modules
    assert top_level(modules) == {"matplotlib"}
