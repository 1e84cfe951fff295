"""Schema of ``conf/report/``: the files a run writes about itself when it completes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReportConfig:
    """``report.html`` (a self-contained page: metrics, curves, fairness, robustness,
    explanations, config) and ``model_card.md`` (Mitchell et al. 2019's sections with
    caveats derived from the numbers), written into the run directory at its end.
    Either can be turned off; ``dq-report <run dir>`` writes them again at any time."""

    html: bool = True
    model_card: bool = True
