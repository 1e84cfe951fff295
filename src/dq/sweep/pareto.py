"""What a finished search leaves behind: ``pareto.csv`` at the sweep root (the trials no
other completed trial beats on every objective; for one objective, the best trial) and one
console line per objective naming its best trial.

Degenerate trials (dq.report.degenerate: constant predictors, diverged runs; their marks
are the trial's ``dq.degenerate`` user attribute) are left out of both: a constant
predictor's demographic-parity gap of 0 would otherwise always sit on the front and be the
"best" gap. Only when every completed trial is degenerate are they used, each with its mark.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dq.rundir.write import write_text
from dq.sweep.optuna_space import override_value
from dq.sweep.optuna_study import DEGENERATE, RUN_DIR

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

PARETO_CSV = "pareto.csv"


def mark(trial: FrozenTrial) -> str:
    """``constant predictor, diverged``; ``""`` for a sound trial."""
    return ", ".join(trial.user_attrs.get(DEGENERATE) or [])


def candidates(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials that may be on the front or best: the sound ones, or every
    completed one when none is sound."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [trial for trial in complete if not mark(trial)] or complete


def degenerate_trials(study: optuna.Study) -> list[FrozenTrial]:
    from optuna.trial import TrialState

    return [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if mark(trial)]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated trials among ``candidates``, by trial number (for a single
    objective, every trial with the best value, as Optuna's ``best_trials``)."""
    from optuna.study import StudyDirection

    from dq.report.plots import non_dominated  # without matplotlib

    trials = candidates(study)
    maximise = [direction == StudyDirection.MAXIMIZE for direction in study.directions]
    return [trials[i] for i in non_dominated([trial.values for trial in trials], maximise)]


def pareto_table(trials: Sequence[FrozenTrial], objectives: Sequence[str]) -> str:
    """CSV: ``trial``, each objective's value, each searched parameter, the run dir, and
    ``degenerate`` (empty unless every completed trial was degenerate)."""
    params = list(dict.fromkeys(name for trial in trials for name in trial.params))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", *objectives, *params, "run_dir", "degenerate"])
    for trial in sorted(trials, key=lambda trial: trial.number):
        values = [repr(float(value)) for value in trial.values]
        settings = [override_value(trial.params[name]) if name in trial.params else "" for name in params]
        writer.writerow([trial.number, *values, *settings, trial.user_attrs.get(RUN_DIR, ""), mark(trial)])
    return out.getvalue()


def write_pareto(study: optuna.Study, objectives: Sequence[str], sweep_dir: Path) -> Path:
    path = Path(sweep_dir) / PARETO_CSV
    write_text(path, pareto_table(pareto_trials(study), objectives))
    return path


def best_lines(study: optuna.Study, objectives: Sequence[str], directions: Sequence[str]) -> list[str]:
    """``best test/accuracy (maximize): 0.84 in trial 3: optimizer.lr=0.01 ...`` per objective,
    among the sound trials (a line first names the degenerate ones left out)."""
    trials = candidates(study)
    left_out = [trial for trial in degenerate_trials(study) if trial not in trials]
    lines = []
    if left_out:
        named = ", ".join(f"{trial.number} ({mark(trial)})" for trial in left_out)
        lines.append(f"left out of the front and the best: {len(left_out)} degenerate trial(s): {named}")
    for index, (key, direction) in enumerate(zip(objectives, directions, strict=True)):
        pick = max if direction == "maximize" else min
        best = pick(trials, key=lambda trial, i=index: trial.values[i])
        params = " ".join(f"{name}={override_value(value)}" for name, value in best.params.items())
        flagged = f" (DEGENERATE: {mark(best)}; every trial is)" if mark(best) else ""
        lines.append(f"best {key} ({direction}): {best.values[index]:.4g} in trial {best.number}{flagged}: {params}")
    return lines
