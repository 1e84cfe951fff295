"""Every committed paper table (``conf/paper/*.yaml``) is well formed, without training:

- it validates against ``dq.paper.spec.TableSpec`` (a misspelt field of the table fails);
- every row label a finding names exists (sweep rows expanded as dq-table labels them);
- every run row's overrides (the table's + the row's, full and quick) compose into a valid
  dq run config (a misspelt dq key or value fails here, not after an hour of training).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dq.paper.load import PREPARE_REF, check_table
from dq.paper.plan import RUN, expand_rows
from dq.paper.spec import TableSpec
from dq.spec import compose, to_spec

PAPER = Path(__file__).resolve().parents[1] / "conf" / "paper"
TABLES = sorted(PAPER.glob("*.yaml"))
OUR_TABLES = {"adv_digits", "adv_fmnist", "robust_fair", "explain_sanity", "lora_transfer", "lora_minilm"}


def load(path: Path) -> TableSpec:
    merged = OmegaConf.merge(OmegaConf.structured(TableSpec), OmegaConf.load(path))
    return OmegaConf.to_object(merged)


def labels(spec: TableSpec) -> set[str]:
    return {row.label for row in expand_rows(spec)}


def test_our_tables_are_committed() -> None:
    assert {path.stem for path in TABLES} >= OUR_TABLES


@pytest.mark.parametrize("path", TABLES, ids=lambda path: path.stem)
def test_a_table_validates_and_its_findings_name_its_rows(path: Path) -> None:
    spec = load(path)
    check_table(spec)  # what dq-table checks before anything runs (a compared metric needs a source value)
    assert spec.name == path.stem
    assert spec.title and spec.source.cite and spec.source.where and spec.source.setting
    assert spec.metrics or spec.findings, "a table compares a metric with its source or checks findings"
    assert spec.seeds and spec.quick.seeds
    assert spec.setting and spec.quick.setting, "a table states the setting it runs, full and quick"
    known = labels(spec)
    assert len(known) == len(expand_rows(spec)), "row labels are unique"
    for finding in spec.findings:
        assert finding.op in {">", ">=", "<", "<="}
        assert finding.left in known, f"{finding.text!r}: no row {finding.left!r}"
        assert isinstance(finding.right, (int, float)) or finding.right in known, (
            f"{finding.text!r}: no row {finding.right!r}"
        )
        assert finding.metric in {*spec.metrics, *spec.columns}, f"{finding.text!r}: {finding.metric} is not shown"
    for row in spec.rows:
        assert set(row.source) <= {*spec.metrics, *spec.columns}, f"{row.label}: a source value for an unshown metric"
        if row.reference:
            assert row.note, f"reference row {row.label!r} says how its setting differs"
            assert not row.overrides
    assert not any(PREPARE_REF.search(item) for item in spec.overrides), "{prepare:x} belongs in a row's overrides"
    for stage in {m.group(1) for row in spec.rows for item in row.overrides for m in PREPARE_REF.finditer(item)}:
        assert stage in spec.prepare, f"{{prepare:{stage}}} names no prepare stage"


def run_configs(spec: TableSpec, tmp: Path) -> list[tuple[str, list[str]]]:
    """Every run the table starts (prepare stages and run rows), full and quick, with
    ``{prepare:x}`` pointing at a directory (composition does not read it)."""
    runs = []
    for quick in (False, True):
        appended = list(spec.quick.overrides) if quick else []
        seed = (spec.quick.seeds if quick else spec.seeds)[0]
        for stage, prepare in spec.prepare.items():
            runs.append((f"prepare {stage}", [*prepare.overrides, *appended, f"seed={seed}"]))
        for row in expand_rows(spec):
            if row.kind != RUN:
                continue
            own = [PREPARE_REF.sub(str(tmp), item) for item in row.overrides]
            runs.append(
                (f"{row.label}{' (quick)' if quick else ''}", [*spec.overrides, *own, *appended, f"seed={seed}"])
            )
    return runs


@pytest.mark.parametrize("path", TABLES, ids=lambda path: path.stem)
def test_every_run_of_a_table_composes_into_a_valid_run(path: Path, tmp_path: Path) -> None:
    spec = load(path)
    for label, overrides in run_configs(spec, tmp_path):
        try:
            to_spec(compose(overrides))
        except Exception as error:  # the row's name makes any failure readable
            pytest.fail(f"{path.stem}, row {label!r}: {type(error).__name__}: {error}")


def test_a_misspelt_key_in_a_row_is_caught(tmp_path: Path) -> None:
    table = OmegaConf.load(PAPER / "adv_digits.yaml")
    table.rows[0].overrides = [*table.rows[0].overrides, "regularizer.adversarial.epss=0.1"]
    bad = tmp_path / "adv_digits.yaml"
    OmegaConf.save(table, bad)
    with pytest.raises(pytest.fail.Exception, match=r"row .*epss"):
        test_every_run_of_a_table_composes_into_a_valid_run(bad, tmp_path)


def trainable_and_total(overrides: list[str]) -> tuple[int, int]:
    """(trainable, all) parameters of the model these overrides compose, built on seed 0's
    data with the regularizer's transforms applied (LoRA's adapters and freezing), untrained."""
    from dq import data, models
    from dq.objectives.registry import build_transforms

    run = to_spec(compose(overrides))
    splits = data.build(run.dataset, 0)
    model = models.build(run.model, splits.meta)
    for transform in build_transforms(run.regularizer, splits.meta):
        transform.apply(model)
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@pytest.mark.parametrize(("label", "fraction"), [("full fine-tuning", 1.0), ("head only", 1290 / 421_738)])
def test_lora_transfer_full_fine_tuning_trains_every_parameter_and_head_only_the_head(
    label: str, fraction: float
) -> None:
    """The table's rows, as composed, on an untrained base (``init_from`` left out: no training)."""
    spec = load(PAPER / "lora_transfer.yaml")
    (row,) = [row for row in spec.rows if row.label == label]
    own = [item for item in row.overrides if not PREPARE_REF.search(item)]
    trainable, total = trainable_and_total([*spec.overrides, *own, *spec.quick.overrides])
    assert trainable / total == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("label", "trainable"),
    [
        ("full fine-tuning", 22_566_146),  # every parameter: the encoder and the head, no adapters
        ("LoRA (regularizer.lora.rank=8)", 74_498),
        ("LoRA (regularizer.lora.rank=1)", 9_986),
        ("head only", 770),
        ("reviews, LoRA rank 8", 74_498),
    ],
)
def test_lora_minilm_rows_train_what_their_labels_say(label: str, trainable: int) -> None:
    """Each row of the MiniLM table, as composed (quick size), adapts the packaged encoder as
    labelled: every parameter, rank-r adapters on the 6 layers' query and value (2·r·(384+384)
    each) plus the head, or the head alone (384·2 + 2)."""
    spec = load(PAPER / "lora_minilm.yaml")
    (row,) = [row for row in expand_rows(spec) if row.label == label]
    assert trainable_and_total([*spec.overrides, *row.overrides, *spec.quick.overrides])[0] == trainable
