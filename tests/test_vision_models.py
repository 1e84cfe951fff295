"""The standard vision models (PreAct ResNet-18, WideResNet, any torchvision classifier):
their published sizes, every term and evaluation that applies to image data trained for one
batch on each, the torchvision weights file and its refusals, and the GPU presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import dq
from dq import models
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.models.preact_resnet18 import PreActResNetConfig
from dq.models.torchvision import TorchvisionConfig
from dq.models.wide_resnet import WideResNetConfig
from dq.rundir.read import read_jsonl
from dq.spec import to_spec

CLASSES = tuple(str(i) for i in range(10))
CIFAR = DatasetMeta("cifar10", "image", (3, 32, 32), 10, CLASSES)
DIGITS = DatasetMeta("digits", "image", (1, 8, 8), 10, CLASSES)

# Narrow versions: one batch of every term takes about a second each on one CPU thread.
NARROW = {
    "preact_resnet18": ["model=preact_resnet18", "model.width=4"],
    "wide_resnet": ["model=wide_resnet", "model.depth=10", "model.widen_factor=1"],
    "torchvision": ["model=torchvision", "model.arch=resnet18"],
}
ONE_BATCH = ["dataset=digits", "dataset.limit=40", "trainer.batch_size=64", "explain.enabled=false", "optimizer=sgd"]


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        # Wong et al.'s / RobustBench's PreActResNet18 (with the BatchNorm before the pooling).
        (PreActResNetConfig(), 11_172_170),
        # RobustBench's WRN-28-10 (Carmon2019Unlabeled and others): 36,479,194.
        (WideResNetConfig(), 36_479_194),
        (WideResNetConfig(depth=10, widen_factor=1), 77_850),
        # torchvision's resnet18 has 11,689,512 parameters with its 1000-class fc (512·1000 + 1000).
        (TorchvisionConfig(arch="resnet18"), 11_689_512 - 513_000 + 5_130),
    ],
    ids=["preact_resnet18", "wrn-28-10", "wrn-10-1", "torchvision-resnet18"],
)
def test_parameter_counts_on_cifar10(cfg, expected: int) -> None:
    with torch.device("meta"):  # shapes only: nothing allocated
        model = models.build(cfg, CIFAR)
    assert models.count_parameters(model) == (expected, expected)


@pytest.mark.parametrize("data", [DIGITS, DatasetMeta("mnist", "image", (1, 28, 28), 10, CLASSES), CIFAR])
def test_cifar_form_keeps_resolution_and_pools_adaptively(data: DatasetMeta) -> None:
    """No stride or pooling in the stem: the first stage sees the full image; the last
    stages shrink it by 8 (PreAct) or 4 (WRN), rounded up, before the global pooling."""
    preact = models.build(PreActResNetConfig(width=4), data)
    wide = models.build(WideResNetConfig(depth=10, widen_factor=1), data)
    x = torch.rand(2, *data.input_shape)
    size = data.input_shape[1]
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in (("preact.stem", preact.stem), ("preact.last", preact.stages[-1])):
        module.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
    for name, module in (("wide.stem", wide.stem), ("wide.last", wide.groups[-1])):
        module.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
    assert preact(x).shape == wide(x).shape == (2, 10)
    assert shapes["preact.stem"] == (2, 4, size, size) and shapes["wide.stem"] == (2, 16, size, size)
    assert shapes["preact.last"] == (2, 32, math.ceil(size / 8), math.ceil(size / 8))
    assert shapes["wide.last"] == (2, 64, math.ceil(size / 4), math.ceil(size / 4))


def test_config_ranges_are_one_line_errors(make_cfg) -> None:
    for overrides, message in (
        (["model=wide_resnet", "model.depth=27"], "model.depth must be 6n \\+ 4 from 10 to 1000"),
        (
            ["model=preact_resnet18", "model.blocks=[2,0]"],
            "model.blocks must be 1 to 8 counts from 1 to 500, got \\[2, 0\\]",
        ),
        (["model=torchvision", "model.arch=' '"], "model.arch must name a torchvision classification model"),
    ):
        with pytest.raises(DQUserError, match=message):
            to_spec(make_cfg(*overrides))


# --------------------------------------------------------------------------- every term, one batch
# Every term and evaluation of image data; fairness and Group DRO on the class groups
# (dataset.group=label: no image dataset has sensitive attributes).
TERMS: dict[str, list[str]] = {
    "fairness": ["regularizer=[fairness]", "dataset.group=label"],
    "group_dro": ["regularizer=[group_dro]", "dataset.group=label"],
    "channels_last": ["trainer.channels_last=true"],
    "pgd": ["regularizer=[adversarial]", "regularizer.adversarial.steps=2", "regularizer.adversarial.val_limit=8"],
    "fgsm_rs": [
        "regularizer=[adversarial]",
        "regularizer.adversarial.method=fgsm_rs",
        "regularizer.adversarial.val_limit=8",
        "regularizer.adversarial.val_every=1",  # the guard's measurement runs in a one-epoch run
    ],
    "trades": [
        "regularizer=[adversarial]",
        "regularizer.adversarial.method=trades",
        "regularizer.adversarial.steps=2",
        "regularizer.adversarial.val_limit=8",
    ],
    "attribution": ["regularizer=[attribution]", "dataset=decoy_mnist"],
    "lora": ["regularizer=[lora]"],
    "distill": ["regularizer=[distill]"],
    "prune": ["compress=prune"],
    "quantize": ["compress=quantize"],
    "explain": [
        "explain.enabled=true",
        "eval.robust.eps=[0.1]",
        "eval.robust.steps=2",
    ],
}
STRUCTURAL = ("integrated_gradients", "saliency", "input_x_gradient", "deeplift", "gradient_shap", "occlusion")
LOGGED = {"pgd": "adversarial", "fgsm_rs": "adversarial", "trades": "adversarial"}
CASES = [(model, term) for model in NARROW for term in TERMS]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished CNN run on digits: the teacher of the distillation cases."""
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    dq.train(compose_config([*ONE_BATCH, "model=cnn"]), run_dir=run_dir)
    return run_dir


@pytest.mark.parametrize(("model", "term"), CASES, ids=["-".join(case) for case in CASES])
def test_every_term_trains_a_batch(make_cfg, tmp_path, request, model: str, term: str) -> None:
    # The methods that use the model's structure or gradients (LIME and Kernel SHAP only call
    # it, and take most of the time); DeepLift is refused on torchvision's ResNet (below).
    methods = [m for m in STRUCTURAL if model != "torchvision" or m != "deeplift"]
    overrides = [*ONE_BATCH, *NARROW[model], *TERMS[term], f"explain.methods=[{','.join(methods)}]"]
    if term == "distill":
        overrides.append(f"regularizer.distill.teacher={request.getfixturevalue('teacher')}")
    run_dir = tmp_path / "run"
    metrics = dq.train(make_cfg(*overrides), run_dir=run_dir)
    (epoch,) = read_jsonl(run_dir / "metrics.jsonl")
    assert math.isfinite(metrics["test/accuracy"])
    name = LOGGED.get(term, term)
    if name in {"adversarial", "attribution", "distill", "fairness", "group_dro"}:
        assert math.isfinite(epoch[f"train/{name}"])
    if term in {"fairness", "group_dro"}:  # class groups: each class's accuracy, the worst their minimum
        by_group = {k: v for k, v in metrics.items() if k.startswith("test/group_accuracy/") and "/ci_" not in k}
        assert len(by_group) == 10
        assert metrics["test/worst_group_accuracy"] == min(by_group.values())
    if term in {"pgd", "fgsm_rs", "trades"}:  # attacked on val_limit=8 examples: a count out of 8
        attacked = epoch["val/robust_accuracy"] * 8
        assert attacked == pytest.approx(round(attacked), abs=1e-6) and 0 <= round(attacked) <= 8
    if term == "lora":  # adapters on the convolutions and the head's input side, base frozen
        assert 0 < metrics["params/trainable_fraction"] < 1
        assert metrics["params/trainable"] < metrics["params/total"]
    if term == "prune":
        assert metrics["compress/pruned_share"] == pytest.approx(0.5, abs=0.01)
        assert math.isfinite(metrics["compress/test/accuracy"])
    if term == "quantize":
        assert math.isfinite(metrics["compress/test/accuracy"])
    if term == "explain":
        for method in methods:
            assert math.isfinite(metrics[f"explain/{method}/infidelity"]), method
        assert math.isfinite(metrics["test/robust_accuracy@0.1"])
        assert (run_dir / "explanations" / "saliency.png").is_file()


def test_deeplift_is_refused_where_a_relu_runs_twice(make_cfg, tmp_path) -> None:
    """torchvision's BasicBlock calls its one ReLU module twice; captum's DeepLift keeps one
    input per module and would fail after training, so the run is refused before it."""
    cfg = make_cfg(*ONE_BATCH, *NARROW["torchvision"], "explain.enabled=true", "explain.methods=[deeplift]")
    with pytest.raises(DQUserError) as refused:
        dq.train(cfg, run_dir=tmp_path / "run")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("explain method deeplift does not apply to TorchvisionClassifier on image data")
    assert "backbone.layer1.0.relu, backbone.layer1.1.relu, backbone.layer2.0.relu ... run more than once" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


# --------------------------------------------------------------------------- torchvision weights
def test_torchvision_weights_load_from_a_local_file_and_the_head_is_fresh(tmp_path) -> None:
    """A state_dict saved as torchvision publishes its weights (1000-class fc) loads into
    the backbone; the classifier is replaced by a head for the dataset's classes; a gray
    image gives the logits of the same image repeated on three channels."""
    import torchvision

    torch.manual_seed(3)
    source = torchvision.models.get_model("resnet18", weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(4)
    model = models.build(TorchvisionConfig(arch="resnet18", weights=str(path)), DIGITS).eval()
    loaded = model.backbone.state_dict()
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert isinstance(model.backbone.fc, torch.nn.Identity) and model.head.out_features == 10

    x = torch.rand(2, 1, 8, 8)
    source.fc = torch.nn.Identity()
    with torch.no_grad():
        assert torch.allclose(model(x), model.head(source.eval()(x.expand(-1, 3, -1, -1))), atol=1e-6)
    random = models.build(TorchvisionConfig(arch="resnet18"), DIGITS)
    assert not torch.equal(random.backbone.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize(
    ("arch", "weights", "meta", "message"),
    [
        ("resnet", None, DIGITS, r"^model.arch=resnet is not a torchvision classification model; list them: python -c"),
        ("resnet18", "missing.pth", DIGITS, r"^model.weights=.*missing.pth: no such file; give a state_dict"),
        ("resnet18", "resnet34.pth", DIGITS, r"^model.weights=.*resnet34.pth does not load into resnet18: Error"),
        ("squeezenet1_0", None, CIFAR, r"^model.arch=squeezenet1_0 does not end in an nn.Linear classifier"),
        ("vgg11", None, DIGITS, r"^model.arch=vgg11 cannot take 8×8 images \(.*\); choose another arch$"),
        ("googlenet", None, CIFAR, r"^model.arch=googlenet returns GoogLeNetOutputs in training, not logits"),
        ("resnet18", None, DatasetMeta("x", "image", (2, 8, 8), 2, ("a", "b")), r"takes 1- or 3-channel images"),
    ],
)
def test_torchvision_refusals_are_one_line(tmp_path, arch, weights, meta, message) -> None:
    import torchvision

    if weights == "resnet34.pth":
        torch.save(torchvision.models.get_model("resnet34", weights=None).state_dict(), tmp_path / weights)
    path = None if weights is None else str(tmp_path / weights)
    with pytest.raises(DQUserError, match=message) as refused:
        models.build(TorchvisionConfig(arch=arch, weights=path), meta)
    assert "\n" not in str(refused.value)


# --------------------------------------------------------------------------- GPU presets
GPU_PRESETS = {
    # preset: (method, eps, alpha, steps, scheduler, epochs, lr)
    "fast_adv_cifar10": ("fgsm_rs", 8 / 255, 10 / 255, 10, "cyclic", 15, 0.2),
    "pgd_cifar10": ("pgd", 8 / 255, 2 / 255, 10, "step", 200, 0.1),
}


@pytest.mark.parametrize("preset", sorted(GPU_PRESETS))
def test_gpu_presets_compose_to_the_papers_settings(preset: str) -> None:
    from conftest import compose_config

    method, eps, alpha, steps, scheduler, epochs, lr = GPU_PRESETS[preset]
    spec = to_spec(compose_config([f"+experiment={preset}"], fast=False))
    adversarial = spec.regularizer["adversarial"]
    assert (spec.dataset.name, spec.model.name, spec.model.width, list(spec.model.blocks)) == (
        "cifar10",
        "preact_resnet18",
        64,
        [2, 2, 2, 2],
    )
    assert adversarial.method == method and adversarial.norm == "linf" and adversarial.random_start
    assert adversarial.eps == pytest.approx(eps, abs=1e-12) and adversarial.alpha == pytest.approx(alpha, abs=1e-12)
    assert adversarial.steps == steps
    assert spec.scheduler.name == scheduler and spec.trainer.epochs == epochs
    assert (spec.optimizer.name, spec.optimizer.lr, spec.optimizer.momentum) == ("sgd", lr, 0.9)
    assert spec.optimizer.weight_decay == 5e-4
    assert spec.trainer.batch_size == 128 and spec.trainer.amp and spec.trainer.channels_last
    assert spec.trainer.device == "auto" and spec.trainer.amp_dtype == "float16"
    assert spec.eval.robust.eps == [pytest.approx(8 / 255, abs=1e-12)] and spec.eval.robust.steps == 50
    assert spec.trainer.early_stopping.monitor == "val/robust_accuracy"
