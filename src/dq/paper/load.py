"""Reading ``conf/paper/<name>.yaml`` into a checked :class:`~dq.paper.spec.TableSpec`.

Everything a table file can get wrong is found here, before any run starts, and said in
one line: an unknown table (with the available names), an unknown key (with the nearest
valid one), a finding or a ``{prepare:...}`` that names nothing, a compared metric that
no row gives a source value for, a ``requires`` entry that is not a config key with a
description.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dq.config import config_dir
from dq.config.validation import typed
from dq.errors import DQUserError, first_line
from dq.paper.spec import Finding, Row, TableSpec

PAPER_GROUP = "paper"
FINDING_OPS = (">", ">=", "<", "<=")
PREPARE_REF = re.compile(r"\{prepare:([^}]*)\}")
CONFIG_KEY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
BASELINES_MODULE = "dq.paper.baselines"


def tables_dir() -> Path:
    """``conf/paper/``, found the way dq-train finds conf/ (packaged as ``dq/conf``)."""
    return config_dir() / PAPER_GROUP


def available(directory: Path | None = None) -> list[str]:
    """The names of the table files in ``directory`` (default ``conf/paper/``), sorted."""
    return sorted(path.stem for path in (directory or tables_dir()).glob("*.yaml"))


def load_table(name: str, directory: Path | None = None) -> TableSpec:
    """The table ``name`` from ``<directory>/<name>.yaml`` (default ``conf/paper/``),
    merged onto the schema and checked.

    Raises:
        DQUserError: any of the problems listed in the module docstring, in one line.
    """
    path = (directory or tables_dir()) / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(available(directory)) or "none"
        raise DQUserError(f"unknown paper table {name!r}; available: {names}")
    try:
        node = OmegaConf.load(path)
    except Exception as error:  # a YAML syntax error: OmegaConf and PyYAML raise several kinds
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or first_line(str(error))
        raise DQUserError(f"{path}: not readable YAML: {problem}{where}") from error
    requires = node.get("requires") if isinstance(node, DictConfig) else None
    if requires is not None and not isinstance(requires, DictConfig):  # typed() would only say it cannot merge
        raise DQUserError(
            f"paper/{name}: requires must map each config key to what it must point to, "
            f'e.g. {{dataset.root: "the folder holding waterbirds_v1.0/"}}; got {requires!r}'
        )
    spec: TableSpec = typed(f"paper/{name}", TableSpec, node)
    if spec.name != name:
        raise DQUserError(f"{path}: name is {spec.name!r}; it must be the file's name {name!r}")
    check_table(spec)
    return spec


def check_table(spec: TableSpec) -> None:
    """The checks that need the whole table (labels, metrics, prepare names, baselines)."""
    from dq.paper.plan import expand_rows

    where = f"paper/{spec.name}"
    if not spec.rows:
        raise DQUserError(f"{where}: no rows; a table needs at least one row")
    if not spec.seeds or not spec.quick.seeds:
        raise DQUserError(f"{where}: seeds and quick.seeds must each list at least one seed")
    for row in spec.rows:
        _check_row(spec, row, where)
    _check_overrides_run_no_code(spec, where)
    _check_requires(spec, where)
    labels = [planned.label for planned in expand_rows(spec)]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise DQUserError(f"{where}: row labels must be unique; repeated: {', '.join(duplicates)}")
    if not spec.metrics and not spec.findings:
        raise DQUserError(
            f"{where}: nothing to check: compare a metric (metrics, with source values) or state findings"
        )
    with_source = {metric for row in spec.rows for metric in row.source}
    for metric in spec.metrics:
        if metric not in with_source:
            raise DQUserError(
                f"{where}: metric {metric!r} is compared but no row gives its source value; "
                f"rows give: {', '.join(sorted(with_source)) or 'none'}"
            )
    known = set(spec.metrics) | set(spec.columns)
    for number, finding in enumerate(spec.findings):
        _check_finding(finding, number, labels, known, where)
    if spec.pareto and len(spec.pareto) != 2:
        raise DQUserError(f"{where}: pareto must be [x metric, y metric], got {list(spec.pareto)}")
    for metric in spec.pareto:
        if metric not in known:
            raise DQUserError(f"{where}: pareto metric {metric!r} is not among metrics or columns: {', '.join(known)}")


def _check_overrides_run_no_code(spec: TableSpec, where: str) -> None:
    """A table's overrides go to dq-train as they are: refuse those that could name code to
    run there (hydra's callbacks, launchers, sweepers and job environment; any _target_).
    A launcher belongs on the dq-table command line (``dq-table NAME launcher=joblib``)."""
    overrides = [*spec.overrides, *spec.quick.overrides, *(o for row in spec.rows for o in row.overrides)]
    overrides += [o for stage in spec.prepare.values() for o in stage.overrides]
    for override in overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key.startswith("hydra") or "_target_" in override:
            raise DQUserError(
                f"{where}: override {override!r} may not set hydra's settings nor a _target_ (they can name "
                "code to run); a table sets the run's own keys, and a launcher goes on the dq-table command line"
            )


def _check_requires(spec: TableSpec, where: str) -> None:
    """Each ``requires`` entry: a run config key (not Hydra's) and what it must point to, in words."""
    for key, what in spec.requires.items():
        if not CONFIG_KEY.match(key) or key.split(".")[0] == "hydra":
            raise DQUserError(
                f"{where}: requires {key!r}: not a run config key; give dotted keys such as dataset.root or model.weights"
            )
        if not what.strip():
            raise DQUserError(f"{where}: requires {key!r}: say what it must point to (the description is empty)")


def _check_row(spec: TableSpec, row: Row, where: str) -> None:
    what = f"{where}: row {row.label!r}"
    if row.label in ("", "???"):
        raise DQUserError(f"{where}: every row needs a label")
    for metric in row.source:
        if metric not in spec.metrics:
            raise DQUserError(
                f"{what}: source value for {metric!r}, which is not compared; metrics: {', '.join(spec.metrics)}"
            )
    if row.reference and row.baseline:
        raise DQUserError(f"{what}: a row is either a reference row or a baseline row, not both")
    if row.reference and not row.source:
        raise DQUserError(f"{what}: a reference row shows the source's numbers: give it a source")
    if row.baseline:
        from dq.paper import baselines

        if row.baseline.rpartition(".")[0] != BASELINES_MODULE or not callable(
            getattr(baselines, row.baseline.rpartition(".")[2], None)
        ):
            raise DQUserError(
                f"{what}: unknown baseline {row.baseline!r}; available: {', '.join(baselines.available())}"
            )
    for override in row.overrides:
        for name in PREPARE_REF.findall(override):
            if name not in spec.prepare:
                allowed = ", ".join(spec.prepare) or "none (the table has no prepare section)"
                raise DQUserError(f"{what}: {{prepare:{name}}} names no prepare stage; stages: {allowed}")


def _check_finding(finding: Finding, number: int, labels: list[str], known: set[str], where: str) -> None:
    what = f"{where}: finding {number + 1} ({finding.text!r})"
    if finding.op not in FINDING_OPS:
        raise DQUserError(f"{what}: unknown op {finding.op!r}; allowed: {' '.join(FINDING_OPS)}")
    if finding.metric not in known:
        raise DQUserError(
            f"{what}: metric {finding.metric!r} is not among metrics or columns: {', '.join(sorted(known))}"
        )
    sides = [finding.left] + ([finding.right] if isinstance(finding.right, str) else [])
    for side in sides:
        if side not in labels:
            raise DQUserError(f"{what}: no row is labelled {side!r}; rows: {', '.join(labels)}")
    if not isinstance(finding.right, str | int | float) or isinstance(finding.right, bool):
        raise DQUserError(f"{what}: right must be a row label or a number, got {finding.right!r}")
