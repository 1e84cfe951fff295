"""Explaining a finished run again (what ``dq-explain`` runs): load the run, apply
``explain.*`` overrides to its saved config, run the explanation step, merge the
``explain/...`` keys into its metrics.json.

Training results are never touched: the model is loaded from checkpoints/best.pt, and
metrics.json keeps every other key; only the keys of the methods explained again are
replaced (with ``time/explain_s``), atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dq import metric_keys as keys
from dq.device import resolve_device, set_threads
from dq.errors import DQUserError
from dq.explain.run import explain_run
from dq.rundir.checksums import write_recorded_json
from dq.rundir.layout import METRICS_JSON
from dq.rundir.load import load_run
from dq.rundir.read import read_metrics
from dq.runner import write_report
from dq.spec import to_spec

EXAMPLE = "explain.methods=[deeplift] explain.metrics=[infidelity]"


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """``key=value`` strings (Hydra's syntax) as a config; only ``explain.*`` keys.

    Raises:
        DQUserError: an item that is not ``key=value``, a key outside ``explain``, or a
            value OmegaConf cannot parse.
    """
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise DQUserError(f"override {item!r} is not key=value; for example: {EXAMPLE}")
        if not key.startswith("explain.") or key == "explain.":
            raise DQUserError(f"only explain.* keys can change on a finished run, got {key!r}; for example: {EXAMPLE}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as error:
        first = next((line for line in str(error).splitlines() if line.strip()), str(error))
        raise DQUserError(f"bad override: {first}") from error


def explain_directory(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Explain the finished run in ``path`` with its saved ``explain`` config, changed by
    ``overrides``; write ``explanations/`` and merge the metrics into metrics.json.
    Returns the new explanation metrics.

    Raises:
        DQUserError: not a completed run directory, a bad override, an unknown method or
            metric, or one that does not apply to the run's data or model.
    """
    changes = parse_overrides(overrides)
    run = load_run(path)
    cfg = OmegaConf.merge(run.cfg, changes)
    spec = to_spec(cfg)  # checks the explain node against ExplainConfig
    set_threads(spec.trainer.num_threads)
    device = resolve_device("cpu" if str(spec.trainer.device) == "cpu" else "auto")
    model = run.model.to(device)
    metrics = explain_run(model, run.splits, run.splits.meta, spec.explain, run.run_dir, device, spec.seed)
    merge_metrics(run.run_dir / METRICS_JSON, metrics, [str(m) for m in spec.explain.methods])
    write_report(spec, run.run_dir)  # report.html and model_card.md show the new explanations
    return metrics


def merge_metrics(path: Path, metrics: dict[str, float], methods: Sequence[str]) -> dict[str, float]:
    """``path``'s metrics with the keys of ``methods`` replaced by ``metrics`` (others kept)."""
    existing = read_metrics(path.parent) if path.exists() else {}

    def stale(key: str) -> bool:
        return any(keys.parse(key).method == m or key == keys.explain_seconds_per_sample(m) for m in methods)

    merged = {key: value for key, value in existing.items() if not stale(key)}
    merged.update(metrics)
    write_recorded_json(path.parent, path.name, merged)
    return merged
