"""Compression (issue 12): the sparsity pruning reaches, a structured-pruned model that is
really smaller and still runs (and loads back from best.pt with weights_only=True), the
compressed run directory dq-train compress=... and dq-compress write, and the refusals,
which leave nothing behind. Quantisation is tested on its own branch (dq.compress.quantize)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import dq
from dq import models
from dq.cli import compress_main
from dq.compress.prune import prune_model, prune_targets, reshape_like, zero_share
from dq.config.compress import PruneConfig, PruneKind
from dq.report.collect import find_runs
from dq.rundir.layout import COMPRESSED, COMPRESSION_JSON
from dq.spec import to_spec

DIGITS = ("dataset=digits", "explain.enabled=false", "dataset.limit=120")


def _built(make_cfg, *overrides: str):
    spec = to_spec(make_cfg(*DIGITS, *overrides))
    splits = dq.data.build(spec.dataset, spec.seed)
    return spec, splits, models.build(spec.model, splits.meta)


def test_global_magnitude_reaches_the_amount_and_fine_tuning_keeps_the_zeros(make_cfg) -> None:
    spec, splits, model = _built(make_cfg, "model=mlp")
    total = sum(p.numel() for p in model.parameters())
    pruned = prune_model(model, PruneConfig(amount=0.7, finetune_epochs=1), splits, spec, torch.device("cpu"))
    share, count = zero_share(prune_targets(pruned.model))
    assert abs(share - 0.7) < 0.01 and abs(pruned.sparsity - share) < 1e-9
    assert count == sum(m.weight.numel() for m in pruned.model.modules() if isinstance(m, torch.nn.Linear))
    # the masks are gone (plain weights), and the fine-tuning epoch did not revive a pruned weight
    assert not any(name.endswith(("_orig", "_mask")) for name in pruned.model.state_dict())
    nonzero = sum(int((p != 0).sum()) for p in pruned.model.parameters())
    assert nonzero < total - 0.69 * count


def test_structured_pruning_removes_units_and_the_model_loads_back(make_cfg, tmp_path: Path) -> None:
    spec, splits, model = _built(make_cfg, "model=cnn")
    before = sum(p.numel() for p in model.parameters())
    cfg = PruneConfig(kind=PruneKind.structured, amount=0.5)
    pruned = prune_model(model, cfg, splits, spec, torch.device("cpu")).model
    after = sum(p.numel() for p in pruned.parameters())
    assert after < 0.5 * before  # half the channels of each layer: ~a quarter of the weights left
    assert pruned.head.out_features == splits.meta.num_classes
    logits = pruned(splits.test.x[:5])
    assert logits.shape == (5, splits.meta.num_classes)
    path = tmp_path / "best.pt"
    torch.save(
        {"model": pruned.state_dict(), "shapes": {k: list(v.shape) for k, v in pruned.state_dict().items()}}, path
    )
    saved = torch.load(path, weights_only=True)
    rebuilt = reshape_like(models.build(spec.model, splits.meta), saved["shapes"])
    rebuilt.load_state_dict(saved["model"])
    rebuilt.eval()
    assert torch.allclose(rebuilt(splits.test.x[:5]), logits)


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dq-train on adult (DP penalty, 300 examples a split) with compress=prune amount 0.8."""
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("compress") / "run"
    overrides = ("dataset=adult", "model=mlp", "regularizer=[fairness]", "dataset.limit=300", "explain.enabled=false")
    dq.train(compose_config((*overrides, "compress=prune", "compress.amount=0.8")), run_dir=run_dir)
    return run_dir


def _only_compressed(run_dir: Path) -> Path:
    (found,) = (run_dir / COMPRESSED).iterdir()
    return found


def test_dq_train_with_compress_writes_the_compressed_run_and_its_keys(pruned_run: Path) -> None:
    metrics = json.loads((pruned_run / "metrics.json").read_text())
    for key in ("compress/test/accuracy", "compress/test/dp_diff", "compress/delta/test/accuracy"):
        assert isinstance(metrics[key], float), key
    assert metrics["compress/delta/test/accuracy"] == pytest.approx(
        metrics["compress/test/accuracy"] - metrics["test/accuracy"]
    )
    assert abs(metrics["compress/pruned_share"] - 0.8) < 0.001  # of the Linear weights, what amount asks
    # one meaning everywhere: every parameter counted, biases (never pruned) included
    assert metrics["compress/sparsity"] == 1 - metrics["compress/nonzeros"] / metrics["compress/original/params"]
    assert metrics["compress/sparsity"] < metrics["compress/pruned_share"]
    target = _only_compressed(pruned_run)
    assert target.name.startswith("prune-global_magnitude-0.8_")
    assert json.loads((target / "run.json").read_text())["status"] == "completed"
    info = json.loads((target / COMPRESSION_JSON).read_text())
    assert info["original_run"] == str(pruned_run.resolve())
    assert info["original_git"] == json.loads((pruned_run / "run.json").read_text())["git"]
    assert info["settings"] == {"method": "prune", "kind": "global_magnitude", "amount": 0.8, "finetune_epochs": 0}
    assert info["params_after"] == info["params_before"]  # unstructured: zeros, not fewer tensors
    assert info["nonzeros_after"] < 0.3 * info["nonzeros_before"]
    assert info["pruned_share"] == metrics["compress/pruned_share"] and "sparsity" not in info
    written = json.loads((target / "metrics.json").read_text())
    assert written["test/accuracy"] == metrics["test/accuracy"]  # the original's keys beside the new ones
    assert written["compress/test/accuracy"] == metrics["compress/test/accuracy"]
    config = yaml.safe_load((target / ".hydra" / "config.yaml").read_text())
    assert config["compress"]["amount"] == 0.8 and config["dataset"]["name"] == "adult"
    state = torch.load(target / "checkpoints" / "best.pt", weights_only=True)["model"]
    zeros = sum(int((t == 0).sum()) for k, t in state.items() if k.endswith("weight"))
    assert zeros / sum(t.numel() for k, t in state.items() if k.endswith("weight")) > 0.79
    # dq-report lists the run once: its compressed copy is in its own compress/... keys
    assert [run.run_dir for run in find_runs([pruned_run])] == [pruned_run]


def test_dq_compress_structured_on_a_finished_run(pruned_run: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(pruned_run, run_dir, ignore=shutil.ignore_patterns(COMPRESSED))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    compress_main([str(run_dir), "compress=prune", "compress.kind=structured", "compress.amount=0.5"])
    target = _only_compressed(run_dir)
    assert str(target) in capsys.readouterr().out
    assert {p: p.read_bytes() for p in before} == before  # nothing the run wrote was touched
    info = json.loads((target / COMPRESSION_JSON).read_text())
    assert info["params_after"] < 0.5 * info["params_before"]
    assert info["size_after_bytes"] < info["size_before_bytes"]
    metrics = json.loads((target / "metrics.json").read_text())
    # The key is the saved model's own accuracy: rebuild it from best.pt and score the test split.
    run = dq.load_run(run_dir)
    saved = torch.load(target / "checkpoints" / "best.pt", weights_only=True)
    rebuilt = reshape_like(models.build(run.spec.model, run.splits.meta), saved["shapes"])
    rebuilt.load_state_dict(saved["model"])
    with torch.no_grad():
        correct = (rebuilt.eval()(run.splits.test.x).argmax(dim=1) == run.splits.test.y).float().mean().item()
    assert metrics["compress/test/accuracy"] == pytest.approx(correct, abs=1e-6)
    assert metrics["compress/delta/test/accuracy"] == pytest.approx(correct - run.metrics["test/accuracy"], abs=1e-6)


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        compress_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_refusals_say_one_line_and_leave_nothing(pruned_run: Path, tmp_path: Path, capsys, make_cfg) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(pruned_run, run_dir, ignore=shutil.ignore_patterns(COMPRESSED))
    assert "compress.amount must be in (0, 1), got 1.5" in _refused(
        [str(run_dir), "compress=prune", "compress.amount=1.5"], capsys
    )
    assert "unknown compress 'nope'; allowed: prune, quantize" in _refused([str(run_dir), "compress=nope"], capsys)
    assert "choose a method: compress=prune or compress=quantize" in _refused([str(run_dir)], capsys)
    assert "dq-compress takes compress=<choice>" in _refused([str(run_dir), "compress=prune", "seed=1"], capsys)
    compressed = _only_compressed(pruned_run)
    assert "is a compressed run already" in _refused([str(compressed), "compress=prune"], capsys)
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "running"}))
    assert "has status 'running'; only completed runs load" in _refused([str(run_dir), "compress=prune"], capsys)
    assert not (run_dir / COMPRESSED).exists()
    # a model the pruning kind does not handle: refused before training, no run directory
    refused = tmp_path / "attention"
    cfg = make_cfg(*DIGITS, "model=attention", "compress=prune", "compress.kind=structured")
    with pytest.raises(dq.errors.DQUserError, match=r"^compress.kind=structured cannot prune model=attention on image"):
        dq.train(cfg, run_dir=refused)
    assert not refused.exists()


@pytest.mark.slow
def test_prune_sweep_end_to_end_has_the_compress_columns(tmp_path: Path, monkeypatch) -> None:
    """``dq-train -m +experiment=prune_sweep 'compress.amount=0.5,0.9' seed=0,1`` (shrunk): every
    job completes with its pruned copy, and the sweep's summary has the compress keys as columns."""
    import csv

    from conftest import sweep_in_process

    args = [
        "+experiment=prune_sweep",
        "compress.amount=0.5,0.9",
        "seed=0,1",
        "dataset.limit=300",
        "trainer.epochs=2",
        "eval.robust.limit=50",
        "trainer.progress=false",
        "report.html=false",
        "report.model_card=false",
    ]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 0
    (sweep,) = (tmp_path / "outputs" / "multirun" / "prune_sweep").iterdir()
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert sorted(float(row["compress.amount"]) for row in rows) == [0.5, 0.9]
    jobs = [job for job in sweep.iterdir() if job.name.isdigit()]
    assert len(jobs) == 4 and all(len(list((job / COMPRESSED).iterdir())) == 1 for job in jobs)
    robust: dict[float, list[float]] = {}  # the pruned model's PGD accuracy on the first 50 test rows, per job
    for job in jobs:
        amount = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["compress"]["amount"]
        value = json.loads((job / "metrics.json").read_text())["compress/test/robust_accuracy@0.1"]
        assert value * 50 == pytest.approx(round(value * 50), abs=1e-4)  # a count over eval.robust.limit rows
        robust.setdefault(float(amount), []).append(value)
    for row in rows:
        assert row["compress/test/accuracy/n"] == "2"
        assert abs(float(row["compress/sparsity/mean"]) - float(row["compress.amount"])) < 0.01
        expected = sum(robust[float(row["compress.amount"])]) / 2  # the summary's column is the jobs' mean
        assert float(row["compress/test/robust_accuracy@0.1/mean"]) == pytest.approx(expected, abs=1e-6)
