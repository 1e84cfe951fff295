"""What a finished search leaves behind: ``pareto.csv`` at the sweep root (the trials no
other completed trial beats on every objective; for one objective, the best trial) and one
console line per objective naming its best trial."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dq.outputs import write_text
from dq.sweep.optuna_space import override_value
from dq.sweep.optuna_study import RUN_DIR

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

PARETO_CSV = "pareto.csv"


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated completed trials, by trial number (Optuna's own ``best_trials``,
    which for a single objective is every trial with the best value)."""
    return sorted(study.best_trials, key=lambda trial: trial.number)


def pareto_table(trials: Sequence[FrozenTrial], objectives: Sequence[str]) -> str:
    """CSV: ``trial``, each objective's value, each searched parameter, the run dir."""
    params = list(dict.fromkeys(name for trial in trials for name in trial.params))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", *objectives, *params, "run_dir"])
    for trial in trials:
        values = [repr(float(value)) for value in trial.values]
        settings = [override_value(trial.params[name]) if name in trial.params else "" for name in params]
        writer.writerow([trial.number, *values, *settings, trial.user_attrs.get(RUN_DIR, "")])
    return out.getvalue()


def write_pareto(study: optuna.Study, objectives: Sequence[str], sweep_dir: Path) -> Path:
    path = Path(sweep_dir) / PARETO_CSV
    write_text(path, pareto_table(pareto_trials(study), objectives))
    return path


def best_lines(study: optuna.Study, objectives: Sequence[str], directions: Sequence[str]) -> list[str]:
    """``best test/accuracy (maximize): 0.84 in trial 3: optimizer.lr=0.01 ...`` per objective."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    lines = []
    for index, (key, direction) in enumerate(zip(objectives, directions, strict=True)):
        pick = max if direction == "maximize" else min
        best = pick(complete, key=lambda trial, i=index: trial.values[i])
        params = " ".join(f"{name}={override_value(value)}" for name, value in best.params.items())
        lines.append(f"best {key} ({direction}): {best.values[index]:.4g} in trial {best.number}: {params}")
    return lines
