"""Real run directories for the report tests: one tiny Adult run (groups, a PGD attack,
explanations), made once per test module, and copies of it edited by hand to hold the
strings a report must escape."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rich.console import Console

import dq
from conftest import compose_config

HOSTILE = "<script>alert(1)</script>"
AMP_METRIC = "test/group_accuracy/A&B <i>"


def tiny_run(run_dir: Path, *overrides: str) -> Path:
    """Train the tiny run into ``run_dir`` (report on) and return it."""
    cfg = compose_config(
        [
            "dataset=adult",
            "model=mlp",
            "dataset.limit=200",
            "eval.robust.eps=[0.05,0.1]",
            "explain.methods=[integrated_gradients,saliency]",
            "report.html=true",
            "report.model_card=true",
            *overrides,
        ]
    )
    dq.train(cfg, run_dir=run_dir, console=Console(file=open(run_dir.parent / "console.txt", "w")))  # noqa: SIM115
    return run_dir


def hostile_copy(run_dir: Path, target: Path) -> Path:
    """A copy of ``run_dir`` whose config, overrides and a metric name carry markup."""
    shutil.copytree(run_dir, target)
    config = target / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("experiment_name: default", f"experiment_name: '{HOSTILE}'"))
    info = json.loads((target / "run.json").read_text())
    info["overrides"] = [f"+note={HOSTILE}"]
    (target / "run.json").write_text(json.dumps(info))
    metrics = json.loads((target / "metrics.json").read_text())
    metrics[AMP_METRIC] = 0.25
    (target / "metrics.json").write_text(json.dumps(metrics))
    (target / "checksums.json").unlink()  # edited by hand: read unchecked, as a run from before checksums
    return target
