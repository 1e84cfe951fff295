"""Every preset in conf/experiment composes, runs (tiny: one epoch, a few examples) and
shows its own signature: the regularizer terms it selects are logged every epoch, its
robust radii are scored, LoRA trains a small share of the parameters, fairness presets
report the demographic-parity gap. The expected signature comes from a table here AND
from the composed config, so a preset that silently drops a term fails."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import dq
from dq.config import config_dir
from dq.rundir.read import read_json, read_jsonl
from run_checks import check_run

PRESETS = sorted(path.stem for path in (config_dir() / "experiment").glob("*.yaml"))
ROBUST_LIMIT = 16  # eval.robust.limit in the runs below


@dataclass(frozen=True)
class Signature:
    terms: frozenset[str]  # loss terms with a nonzero weight: train/<name> in metrics.jsonl
    eps: tuple[float, ...] = ()  # eval.robust.eps: test/robust_accuracy@<eps>
    lora: bool = False  # adapters on a frozen base: under 10% of the parameters train
    groups: bool = False  # the data has groups (fairness presets; robust_fair: the classes): test/dp_diff


SIGNATURES = {
    "adv_digits": Signature(frozenset({"adversarial"}), eps=(0.1,)),
    "adv_fmnist": Signature(frozenset({"adversarial"}), eps=(0.05, 0.1)),
    "distill_fmnist": Signature(frozenset({"distill"})),
    "fair_adult": Signature(frozenset({"fairness"}), groups=True),
    "fair_adv": Signature(frozenset({"fairness", "adversarial"}), eps=(0.1,), groups=True),
    "lora_transfer": Signature(frozenset(), lora=True),
    "robust_fair": Signature(frozenset({"adversarial"}), eps=(0.1,), groups=True),
    "rrr_decoy": Signature(frozenset({"attribution"})),
    "group_dro": Signature(frozenset({"group_dro"}), groups=True),
    "trades_digits": Signature(frozenset({"adversarial"}), eps=(0.1,)),
    # Compression presets (issue 12): trained as these say, then pruned (compress/... keys, tests/test_compress.py).
    "prune_sweep": Signature(frozenset({"fairness"}), eps=(0.1,), groups=True),
    "prune_sweep_fmnist": Signature(frozenset(), eps=(0.05,), groups=True),
    # GPU presets (issue 23): CIFAR-10 does not ship, so their recipe runs here on digits with
    # a narrow network (SHRUNK); tests/test_vision_models.py checks their composed settings.
    "fast_adv_cifar10": Signature(frozenset({"adversarial"}), eps=(8 / 255,)),
    "pgd_cifar10": Signature(frozenset({"adversarial"}), eps=(8 / 255,)),
    # The pretrained MiniLM with LoRA adapters (tests/test_text_encoder.py checks the encoder).
    "minilm_lora": Signature(frozenset(), lora=True),
}
SHRUNK = {
    "fast_adv_cifar10": ["dataset=digits", "model.width=4"],
    "pgd_cifar10": ["dataset=digits", "model.width=4"],
    "minilm_lora": ["dataset.limit=64", "dataset.max_length=32", "trainer.epochs=1"],
}
ALL_TERMS = {"adversarial", "attribution", "distill", "fairness", "group_dro"}


def test_the_issue_presets_exist_and_each_has_a_signature() -> None:
    expected = {
        "fair_adv",
        "fair_adult",
        "adv_digits",
        "adv_fmnist",
        "trades_digits",
        "rrr_decoy",
        "lora_transfer",
        "robust_fair",
    }
    assert expected <= set(PRESETS)
    assert set(SIGNATURES) == set(PRESETS)  # a new preset needs a row above


@pytest.fixture(scope="module")
def pretrained_mnist_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first of lora_transfer's two commands, shrunk (also distill_fmnist's teacher)."""
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("pretrain") / "run"
    dq.train(compose_config(["dataset=fashion_mnist", "model=cnn", "explain.enabled=false"]), run_dir=run_dir)
    return run_dir


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_and_shows_its_signature(make_cfg, tmp_path, preset, request) -> None:
    signature = SIGNATURES[preset]
    overrides = [f"+experiment={preset}", f"eval.robust.limit={ROBUST_LIMIT}", "eval.robust.steps=2"]
    overrides += SHRUNK.get(preset, [])
    if preset == "lora_transfer":
        overrides.append(f"regularizer.lora.init_from={request.getfixturevalue('pretrained_mnist_cnn')}")
    if preset == "distill_fmnist":
        overrides.append(f"regularizer.distill.teacher={request.getfixturevalue('pretrained_mnist_cnn')}")
    cfg = make_cfg(*overrides)

    # The composed config selects what the table says.
    selected = {name for name, term in cfg.regularizer.items() if name != "lora" and term.weight != 0}
    assert selected == signature.terms
    assert tuple(float(e) for e in cfg.eval.robust.eps) == signature.eps
    assert ("lora" in cfg.regularizer) == signature.lora

    run_dir = tmp_path / "run"
    metrics = dq.train(cfg, run_dir=run_dir)
    assert cfg.experiment_name == preset
    assert read_json(run_dir / "run.json")["status"] == "completed"
    model, splits, _ = check_run(run_dir, metrics, epochs=1)
    assert ("compress/test/accuracy" in metrics) == (cfg.compress is not None)

    # Every selected term is logged, finite, on every epoch; no other term is.
    for line in read_jsonl(run_dir / "metrics.jsonl"):
        for name in signature.terms:
            assert math.isfinite(line[f"train/{name}"]), (name, line)
        assert not {f"train/{name}" for name in ALL_TERMS - signature.terms} & set(line)

    # Every robust radius is scored on the first ROBUST_LIMIT test examples (a count over
    # them), per group where the data has groups.
    robust_keys = {k for k in metrics if k.startswith("test/robust_accuracy@")}
    assert robust_keys == {f"test/robust_accuracy@{eps:g}" for eps in signature.eps}
    attacked = splits.test.subset(slice(0, ROBUST_LIMIT))
    for eps in signature.eps:
        value = metrics[f"test/robust_accuracy@{eps:g}"] * len(attacked)
        assert value == pytest.approx(round(value), abs=1e-6)
        if signature.groups:
            present = {splits.meta.group_names[g].replace("/", "-") for g in attacked.group.tolist()}
            groups = {k for k in metrics if k.startswith("test/group_robust_accuracy/") and k.endswith(f"@{eps:g}")}
            assert groups == {f"test/group_robust_accuracy/{g}@{eps:g}" for g in present}

    # LoRA: the base is frozen; check_run has matched params/trainable to requires_grad.
    fraction = metrics["params/trainable"] / metrics["params/total"]
    assert metrics["params/trainable_fraction"] == pytest.approx(fraction)
    assert (fraction < 0.1) == signature.lora
    if signature.lora:  # trainable: exactly the adapters and the head (the preset's train: [head])
        wanted = {n: p for n, p in model.named_parameters() if ".lora_" in n or n.startswith("head.")}
        assert {n for n, p in model.named_parameters() if p.requires_grad} == set(wanted)
        assert any(".lora_" in n for n in wanted)
        assert metrics["params/trainable"] == sum(p.numel() for p in wanted.values())

    # Data with groups: the demographic-parity gap of the predictions, recomputed here
    # (largest gap in the rate of predicting a class, over classes; class 1 when binary).
    assert splits.meta.has_groups == signature.groups
    assert ("test/dp_diff" in metrics) == signature.groups
    if signature.groups:
        with torch.no_grad():
            predicted = model(splits.test.x).argmax(dim=1).numpy()
        group = splits.test.group.numpy()
        classes = [1] if splits.meta.num_classes == 2 else range(splits.meta.num_classes)
        gaps = [np.ptp([(predicted[group == g] == c).mean() for g in np.unique(group)]) for c in classes]
        assert metrics["test/dp_diff"] == pytest.approx(max(gaps), abs=1e-6)
