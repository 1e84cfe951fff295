"""Schema of ``conf/report/``: the files a run writes about itself when it completes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PerRun(StrEnum):
    """When a run writes its own report files.

    ``auto``: at the end of a run, except in a job of a sweep (``dq-train -m``, an Optuna
    search), whose report would cost more than its training (about 1 s of matplotlib per
    job) and which the sweep's own summary at its root replaces; ``dq-report <job dir>``
    writes a job's files whenever they are wanted. ``always``: in sweep jobs too."""

    auto = "auto"
    always = "always"


@dataclass
class ReportConfig:
    """``report.html`` (a self-contained page: metrics, curves, fairness, robustness,
    explanations, config) and ``model_card.md`` (Mitchell et al. 2019's sections with
    caveats derived from the numbers), written into the run directory at its end
    (``per_run`` says whether a sweep's jobs write them too).
    Either can be turned off; ``dq-report <run dir>`` writes them again at any time."""

    html: bool = True
    model_card: bool = True
    per_run: PerRun = PerRun.auto
