"""Chaos (issue 11, point 6): scripts/chaos_sweep.py SIGKILLs a small sweep's process group
at seeded random moments, re-runs it into the same directory until it completes, and
compares every job with an uninterrupted reference sweep. A few kills here (about two
minutes on a loaded machine); ``--kills 100`` is the long run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dq
from dq.rundir.read import read_json

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chaos_sweep.py"


@pytest.mark.slow
def test_a_sweep_killed_three_times_ends_identical_to_the_uninterrupted_one_and_loses_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(dq.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", "3", "--seed", "3", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = read_json(tmp_path / "summary.json")
    assert summary["kills"] == summary["survived"] == 3
    assert summary["identical"] == summary["episodes"] * summary["jobs_per_sweep"] > 0
    assert summary["differing"] == summary["missing"] == summary["lost"] == summary["from_scratch"] == 0
    assert summary["problems"] == [] and summary["unexpected_exits"] == []
    assert "completed results lost (target 0)" in done.stdout
