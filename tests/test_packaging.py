"""The configs travel with the package: a built wheel holds conf/ as dq/conf and an
installed copy finds it there, away from any checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_config_tree_and_finds_it_when_installed(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("dq-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dq/conf/config.yaml" in names
    assert "dq/conf/dataset/mnist5k.yaml" in names and "dq/conf/model/cnn.yaml" in names
    assert "hydra_plugins/dq_optuna_sweeper/sweeper.py" in names  # the Optuna sweeper plugin
    assert "hydra_plugins/dq_process_launcher/launcher.py" in names  # launcher=joblib's launcher plugin
    assert "hydra_plugins/__init__.py" not in names  # a namespace package, shared with other plugins

    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True, capture_output=True
    )
    probe = "from dq.config import config_dir; print(config_dir())"
    env = {**os.environ, "PYTHONPATH": str(target)}
    found = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, check=True, capture_output=True, text=True
    )
    assert Path(found.stdout.strip()) == target / "dq" / "conf"
    assert (target / "dq" / "conf" / "config.yaml").is_file()
