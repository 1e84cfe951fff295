"""The explanation step: captum attributions, their quality metrics, pictures and the
dq-explain command, on small real runs (a digits CNN trained for a few epochs, and one
tiny run per model family and modality)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from rich.console import Console
from torch import nn

import dq
import dq.runner
from dq import models
from dq.cli import explain_main
from dq.config.explain import Baseline, ExplainConfig
from dq.data_records import DatasetMeta, Split, Splits
from dq.errors import DQUserError
from dq.explain.baselines import gaussian_blur
from dq.explain.methods import METHODS, attribute, lookup
from dq.explain.quality import gini, randomized_copy, rank_correlation
from dq.explain.run import check_explain, explain_run, gradient_context
from dq.explain.space import EmbeddingForward, build_space
from dq.modalities import modality_of
from dq.models.attention import AttentionConfig
from dq.models.cnn import CNNConfig
from dq.models.layers import Activation
from dq.models.mlp import MLPConfig
from dq.models.rnn import RNNConfig
from dq.rundir.checksums import write_recorded_json
from dq.rundir.load import LoadedRun, load_run
from dq.rundir.read import read_json

QUIET = Console(quiet=True)


def train(cfg: DictConfig, run_dir: Path) -> LoadedRun:
    dq.train(cfg, run_dir=run_dir, console=QUIET)
    return load_run(run_dir)


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory: pytest.TempPathFactory) -> LoadedRun:
    """A CNN trained on all 8×8 digits for 8 epochs (~97% test accuracy, a few seconds)."""
    from conftest import compose_config

    cfg = compose_config(
        ["dataset=digits", "model=cnn", "trainer.epochs=8", "dataset.limit=null", "explain.enabled=false"]
    )
    run = train(cfg, tmp_path_factory.mktemp("digits_cnn") / "run")
    assert run.metrics["test/accuracy"] > 0.9
    return run


def explain(run: LoadedRun, run_dir: Path, **fields) -> dict[str, float]:
    cfg = ExplainConfig(**{"n_samples": 4, "sensitivity_samples": 2, **fields})
    return explain_run(run.model, run.splits, run.splits.meta, cfg, run_dir, "cpu", seed=0)


# --------------------------------------------------------------------------- evidence
def test_orderings_and_completeness_on_a_trained_digits_cnn(digits_cnn: LoadedRun, tmp_path: Path) -> None:
    """Saliency fails the model-randomisation test where integrated gradients passes it
    only by multiplying with sparse inputs (Adebayo et al. 2018); IG predicts the effect
    of small noise better (lower infidelity) and is complete."""
    model = digits_cnn.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # explain_run must use eval mode and give the mode back
    metrics = explain(
        digits_cnn,
        tmp_path,
        methods=["integrated_gradients", "saliency"],
        metrics=["infidelity", "randomization", "sparseness"],
        n_samples=24,
        ig_steps=64,
    )
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()

    ig, sal = "explain/integrated_gradients", "explain/saliency"
    print({k: round(v, 4) for k, v in metrics.items()})
    assert metrics[f"{sal}/randomization_rho"] < 0.4 < 0.7 < metrics[f"{ig}/randomization_rho"]
    assert metrics[f"{ig}/infidelity"] < metrics[f"{sal}/infidelity"]
    assert metrics[f"{ig}/sparseness"] > metrics[f"{sal}/sparseness"]  # IG is zero on black pixels
    assert metrics["time/explain_s"] > 0 and metrics["time/explain/saliency_per_sample_s"] > 0

    # completeness: sum of attributions = f(x) − f(baseline), for the predicted logit
    saved = np.load(tmp_path / "explanations" / "integrated_gradients.npz")
    x = torch.from_numpy(saved["inputs"])
    with torch.no_grad():
        logits, base = model(x), model(torch.zeros_like(x))
    target = torch.from_numpy(saved["predictions"])
    gap = (logits - base).gather(1, target[:, None]).squeeze(1)
    sums = torch.from_numpy(saved["attributions"]).flatten(1).sum(1)
    assert torch.allclose(sums, gap, atol=0.02 * float(gap.abs().mean()))
    assert metrics[f"{ig}/delta_abs_mean"] < 0.02 * float(gap.abs().mean())
    assert np.array_equal(saved["predictions"], logits.argmax(1).numpy())
    assert np.array_equal(saved["labels"], digits_cnn.splits.test.y[:24].numpy())


def test_every_method_runs_on_the_digits_cnn_with_its_artifacts(digits_cnn: LoadedRun, tmp_path: Path) -> None:
    metrics = explain(digits_cnn, tmp_path, methods=METHODS.names(), metrics=["sparseness", "sensitivity"])
    for name in METHODS.names():
        saved = np.load(tmp_path / "explanations" / f"{name}.npz")
        assert set(saved.files) >= {"inputs", "attributions", "labels", "predictions", "indices"}
        assert saved["attributions"].shape == saved["inputs"].shape == (4, 1, 8, 8)
        assert np.isfinite(saved["attributions"]).all() and np.abs(saved["attributions"]).sum() > 0
        assert (tmp_path / "explanations" / f"{name}.png").stat().st_size > 10_000
        assert 0 < metrics[f"explain/{name}/sparseness"] < 1
        assert np.isfinite(metrics[f"explain/{name}/sensitivity"])
    assert np.all(np.load(tmp_path / "explanations" / "saliency.npz")["attributions"] >= 0)
    record = read_json(tmp_path / "explanations" / "explain.json")
    assert record["methods"]["lime"]["skipped"] == {}


# --------------------------------------------------------------------------- every family
FAMILIES = [
    ("digits", "mlp", ()),
    ("digits", "cnn", ()),
    ("digits", "rnn", ()),
    ("digits", "attention", ()),
    ("adult", "mlp", ("dataset.include_sensitive=true",)),
    ("adult", "attention", ("dataset.include_sensitive=true",)),
    ("rotten_tomatoes", "rnn", ()),
    ("rotten_tomatoes", "attention", ()),
    ("gunpoint", "cnn", ()),
]


@pytest.mark.parametrize(("dataset", "model", "extra"), FAMILIES, ids=[f"{d}-{m}" for d, m, _ in FAMILIES])
def test_every_model_family_on_each_modality_gives_artifacts_and_metrics(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, dataset: str, model: str, extra: tuple[str, ...]
) -> None:
    run = train(make_cfg(f"dataset={dataset}", f"model={model}", "explain.enabled=false", *extra), tmp_path / "run")
    methods = ["integrated_gradients", "saliency", "occlusion"]
    metrics = explain(
        run,
        run.run_dir,
        methods=methods,
        metrics=["infidelity", "sensitivity", "randomization", "sparseness", "mask_mass", "sensitive_share"],
        sensitivity_samples=1,
    )
    meta = run.splits.meta
    out = run.run_dir / "explanations"
    for name in methods:
        saved = np.load(out / f"{name}.npz")
        shape = (4, *meta.input_shape)
        assert saved["inputs"].shape == saved["attributions"].shape == shape
        assert np.isfinite(saved["attributions"]).all()
        assert (out / f"{name}.png").stat().st_size > 5_000
        for key in ("infidelity", "sensitivity", "randomization_rho", "sparseness"):
            assert np.isfinite(metrics[f"explain/{name}/{key}"]), (name, key)
        assert f"explain/{name}/mask_mass" not in metrics  # no annotation masks: skipped, not NaN
        has_share = f"explain/{name}/sensitive_share" in metrics
        assert has_share == (dataset == "adult")
        if has_share:
            columns = list(meta.sensitive_columns)
            share = np.abs(saved["attributions"][:, columns]).sum(1) / np.abs(saved["attributions"]).sum(1)
            assert metrics[f"explain/{name}/sensitive_share"] == pytest.approx(float(share.mean()), rel=1e-5)
        if meta.modality == "text":
            page = (out / f"{name}.html").read_text()
            first_token = meta.vocab[int(saved["inputs"][0, 0])]
            assert first_token in page and "<pad>" not in page
            assert saved["tokens"][0, 0] == first_token
            assert np.all(saved["attributions"][saved["inputs"] == meta.pad_index] == 0)
    assert "explain/integrated_gradients/delta_abs_mean" in metrics


# --------------------------------------------------------------------------- pieces
def text_meta(length: int = 12, vocab: int = 30) -> DatasetMeta:
    return DatasetMeta(
        name="toy_text",
        modality="text",
        input_shape=(length,),
        num_classes=2,
        class_names=("neg", "pos"),
        vocab=("<pad>", "<unk>", *(f"w{i}" for i in range(vocab - 2))),
    )


def token_ids(n: int = 3, length: int = 12) -> torch.Tensor:
    torch.manual_seed(0)
    ids = torch.randint(2, 30, (n, length))
    for i, real in enumerate((length, 7, 3)[:n]):
        ids[i, real:] = 0
    return ids


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
@pytest.mark.parametrize("name", ["integrated_gradients", "saliency", "input_x_gradient"])
def test_layer_attribution_on_the_embedding_equals_attribution_on_embeddings(name: str) -> None:
    """captum's layer variant on model.embedding and the plain method on the embeddings
    (through EmbeddingForward, what the metrics perturb) are the same numbers."""
    meta = text_meta()
    torch.manual_seed(0)
    model = models.build(RNNConfig(hidden_size=16, embedding_dim=8), meta).eval()
    ids = token_ids()
    cfg = ExplainConfig(ig_steps=16)
    space = build_space(model, meta, ids, None, cfg)
    target = torch.tensor([0, 1, 1])
    layer = attribute(lookup(name), space, target, cfg).values
    assert layer.shape == (3, 12, 8)
    method = lookup(name)
    algorithm = method.algorithm(EmbeddingForward(model))
    kwargs = {"baselines": space.baselines, "n_steps": 16} if name == "integrated_gradients" else {}
    plain = algorithm.attribute(space.inputs, target=target, additional_forward_args=(ids,), **kwargs)
    assert torch.allclose(layer, plain.abs() if method.absolute else plain, atol=1e-5)
    assert torch.all(space.reduce(layer)[ids == 0] == 0)  # padding never enters the model


def synthetic(meta: DatasetMeta, x: torch.Tensor) -> Splits:
    split = Split(x, torch.zeros(len(x), dtype=torch.long))
    return Splits(split, split, split, meta)


def test_gradient_shap_lime_and_kernel_shap_on_tokens(tmp_path: Path) -> None:
    """The methods without a layer variant run on the embeddings; one feature per token."""
    meta = text_meta()
    torch.manual_seed(0)
    model = models.build(AttentionConfig(d_model=8, heads=2, layers=1, ff_dim=8), meta)
    methods = ["gradient_shap", "lime", "kernel_shap", "input_x_gradient"]
    cfg = ExplainConfig(methods=methods, metrics=["infidelity", "sparseness"], n_samples=3)
    metrics = explain_run(model, synthetic(meta, token_ids()), meta, cfg, tmp_path, "cpu", seed=0)
    ids = token_ids().numpy()
    for name in methods:
        saved = np.load(tmp_path / "explanations" / f"{name}.npz")
        assert saved["attributions"].shape == (3, 12)
        assert np.all(saved["attributions"][ids == 0] == 0) and np.abs(saved["attributions"][ids != 0]).sum() > 0
        assert np.isfinite(metrics[f"explain/{name}/infidelity"])
        assert (tmp_path / "explanations" / f"{name}.html").is_file()


@pytest.mark.parametrize("baseline", [Baseline.blur, Baseline.mean])
def test_integrated_gradients_is_complete_against_blur_and_mean_baselines(tmp_path: Path, baseline: Baseline) -> None:
    meta = DatasetMeta(name="toy_series", modality="series", input_shape=(1, 40), num_classes=2, class_names=("a", "b"))
    torch.manual_seed(0)
    model = models.build(CNNConfig(channels=[4], hidden=8), meta).eval()
    x = torch.cumsum(torch.randn(6, 1, 40), dim=-1)
    cfg = ExplainConfig(methods=["integrated_gradients"], metrics=[], n_samples=6, baseline=baseline, ig_steps=128)
    explain_run(model, synthetic(meta, x), meta, cfg, tmp_path, "cpu", seed=0)
    saved = np.load(tmp_path / "explanations" / "integrated_gradients.npz")
    reference = (
        gaussian_blur(x, modality_of(meta).blur_sigma(meta))
        if baseline == Baseline.blur
        else x.mean(0, keepdim=True).expand_as(x)
    )
    assert not torch.allclose(reference, x)
    with torch.no_grad():
        gap = (model(x) - model(reference)).gather(1, torch.from_numpy(saved["predictions"])[:, None]).squeeze(1)
    sums = torch.from_numpy(saved["attributions"]).flatten(1).sum(1)
    assert torch.allclose(sums, gap, atol=0.03 * float(gap.abs().mean()))


def test_check_explain_refuses_what_cannot_apply_in_one_line() -> None:
    meta = text_meta()
    rnn = models.build(RNNConfig(hidden_size=8, embedding_dim=4), meta)
    cases = [
        (
            ExplainConfig(methods=["smoothgrad"]),
            r"^unknown explain method 'smoothgrad'; allowed: deeplift, gradient_shap, input_x_gradient, integrated_gradients, ",
        ),
        (ExplainConfig(metrics=["faithfulness"]), r"^unknown explain metric 'faithfulness'; allowed: infidelity, "),
        (
            ExplainConfig(methods=["deeplift"]),
            r"^explain method deeplift does not apply to TokenRNN on text data: .*LSTM",
        ),
        (
            ExplainConfig(baseline=Baseline.mean),
            r"^explain.baseline=mean does not apply to text data .*allowed: zeros$",
        ),
        (ExplainConfig(methods=[]), r"^explain.methods is empty"),
    ]
    for cfg, message in cases:
        with pytest.raises(DQUserError, match=message) as caught:
            check_explain(cfg, meta, rnn)
        assert "\n" not in str(caught.value)
    tabular = DatasetMeta(name="t", modality="tabular", input_shape=(3,), num_classes=2, class_names=("a", "b"))
    with pytest.raises(DQUserError, match="baseline=blur does not apply to tabular data"):
        check_explain(ExplainConfig(baseline=Baseline.blur), tabular, nn.Linear(3, 2))
    gelu_mlp = models.build(MLPConfig(hidden=[4], activation=Activation.gelu), tabular)
    with pytest.raises(DQUserError, match="captum's DeepLift has no rescale rule for GELU"):
        check_explain(ExplainConfig(methods=["deeplift"]), tabular, gelu_mlp)
    assert check_explain(ExplainConfig(methods=["saliency", "saliency", "lime"]), meta, rnn) == ["saliency", "lime"]


def test_cudnn_is_turned_off_for_recurrent_models_on_cuda_only() -> None:
    """cuDNN's RNN backward needs train mode; rather than train mode (dropout on), the
    attribution calls run with cuDNN off, for models that hold an RNN, on CUDA."""
    rnn = models.build(RNNConfig(hidden_size=8, embedding_dim=4), text_meta())
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    enabled = torch.backends.cudnn.enabled
    with gradient_context(rnn, torch.device("cuda")):
        assert torch.backends.cudnn.enabled is False
    assert torch.backends.cudnn.enabled == enabled
    for model, device in ((rnn, "cpu"), (cnn, "cuda"), (cnn, "cpu")):
        with gradient_context(model, device):
            assert torch.backends.cudnn.enabled == enabled


def test_metric_pieces() -> None:
    assert gini(torch.tensor([1.0, 0.0, 0.0, 0.0])) == pytest.approx(0.75)
    assert gini(torch.ones(5)) == pytest.approx(0.0)
    assert np.isnan(gini(torch.zeros(3)))
    assert rank_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert rank_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3)) == 0.0
    model = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2))
    model[0].running_mean.fill_(0.5)
    copy = randomized_copy(model)
    assert not torch.equal(copy[1].weight, model[1].weight) and torch.equal(
        model[0].running_mean, torch.full((3,), 0.5)
    )


def test_mask_mass_is_the_share_of_attribution_inside_the_mask(digits_cnn: LoadedRun, tmp_path: Path) -> None:
    test = digits_cnn.splits.test
    mask = torch.zeros_like(test.x)
    mask[..., :, :4] = 1  # left half
    meta = digits_cnn.splits.meta
    splits = Splits(digits_cnn.splits.train, digits_cnn.splits.val, Split(test.x, test.y, mask=mask), meta)
    cfg = ExplainConfig(methods=["saliency"], metrics=["mask_mass"], n_samples=6, images=False)
    metrics = explain_run(digits_cnn.model, splits, meta, cfg, tmp_path, "cpu", seed=0)
    saved = np.abs(np.load(tmp_path / "explanations" / "saliency.npz")["attributions"])
    expected = (saved[..., :4].sum(axis=(1, 2, 3)) / saved.sum(axis=(1, 2, 3))).mean()
    assert metrics["explain/saliency/mask_mass"] == pytest.approx(float(expected), rel=1e-5)
    assert not (tmp_path / "explanations" / "saliency.png").exists()  # images=false


# --------------------------------------------------------------------------- dq-explain
def test_dq_explain_reexplains_a_finished_run_and_merges_its_metrics(
    digits_cnn: LoadedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(digits_cnn.run_dir, run_dir)
    before = read_json(run_dir / "metrics.json")
    # written as dq writes it, its sha256 recorded (a hand edit would be refused as altered)
    write_recorded_json(
        run_dir, "metrics.json", {**before, "explain/deeplift/stale": 1.0, "explain/saliency/kept": 2.0}
    )
    explain_main([str(run_dir), "explain.methods=[deeplift]", "explain.metrics=[sparseness]", "explain.n_samples=4"])
    after = read_json(run_dir / "metrics.json")
    assert {k: v for k, v in after.items() if not k.startswith(("explain/", "time/explain"))} == before
    assert "explain/deeplift/stale" not in after and after["explain/saliency/kept"] == 2.0
    assert 0 < after["explain/deeplift/sparseness"] < 1 and after["time/explain_s"] > 0
    assert np.load(run_dir / "explanations" / "deeplift.npz")["attributions"].shape == (4, 1, 8, 8)
    assert read_json(run_dir / "explanations" / "explain.json")["config"]["methods"] == ["deeplift"]
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run_dir / "explanations")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], r"missing RUN_DIR"),
        (["{tmp}"], r"is not a dq run directory"),
        (["{run}", "dataset.name=adult"], r"only explain\.\* keys can change on a finished run, got 'dataset.name'"),
        (["{run}", "explain.methods"], r"override 'explain.methods' is not key=value"),
        (["{run}", "explain.n_samples=0"], r"explain.n_samples must be >= 1, got 0"),
        (
            ["{run}", "explain.colour=red"],
            r"unknown key 'explain.colour'; keys of explain: enabled, methods, metrics, ",
        ),
        (["{run}", "explain.methods=[nope]"], r"unknown explain method 'nope'; allowed: deeplift, gradient_shap"),
    ],
)
def test_dq_explain_bad_input_is_one_line_and_exit_2(
    digits_cnn: LoadedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = (digits_cnn.run_dir / "metrics.json").read_text()
    argv = [a.format(tmp=tmp_path, run=digits_cnn.run_dir) for a in args]
    with pytest.raises(SystemExit) as caught:
        explain_main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dq-explain: error: ")
    assert re.search(message, err), err
    assert (digits_cnn.run_dir / "metrics.json").read_text() == before


def test_dq_explain_command_in_a_subprocess(digits_cnn: LoadedRun) -> None:
    env = {**os.environ}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-c", "from dq.cli import explain_main; explain_main()", str(digits_cnn.run_dir)]
    done = subprocess.run(
        [*command, "explain.methods=[lime]", "explain.baseline=blur", "explain.n_samples=0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == "dq-explain: error: explain.n_samples must be >= 1, got 0\n"


# --------------------------------------------------------------------------- the run
@pytest.mark.skipif(
    "explain_run" not in Path(dq.runner.__file__).read_text(), reason="runner.py does not call explain_run yet"
)
def test_a_run_with_explain_enabled_writes_explanations(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = make_cfg(
        "dataset=digits",
        "model=mlp",
        "explain.enabled=true",
        "explain.n_samples=2",
        "explain.methods=[saliency]",
        "explain.metrics=[sparseness]",
    )
    metrics = dq.train(cfg, run_dir=tmp_path, console=QUIET)
    assert "explain/saliency/sparseness" in metrics and metrics["time/explain_s"] > 0
    assert "explain/saliency/sparseness" in read_json(tmp_path / "metrics.json")
    assert (tmp_path / "explanations" / "saliency.png").is_file()


def test_the_attribution_penalty_moves_attribution_mass_out_of_the_decoy_swatch(make_cfg, tmp_path) -> None:
    """Issue 4's evidence: on decoy data, a model trained with the RRR penalty puts clearly
    less attribution in the swatch (explain/<method>/mask_mass) than an unpenalised one."""
    common = (
        "dataset=decoy_mnist",
        "model=mlp",
        "dataset.limit=null",
        "trainer.epochs=3",
        "explain.n_samples=32",
        "explain.methods=[integrated_gradients,saliency]",
        "explain.metrics=[mask_mass]",
        "regularizer=[attribution]",
    )
    plain = dq.train(make_cfg(*common, "regularizer.attribution.weight=0"), run_dir=tmp_path / "plain")
    penalised = dq.train(make_cfg(*common, "regularizer.attribution.weight=100"), run_dir=tmp_path / "rrr")
    for method in ("integrated_gradients", "saliency"):
        key = f"explain/{method}/mask_mass"
        assert penalised[key] < 0.5 * plain[key], (method, plain[key], penalised[key])


def test_metrics_that_do_not_apply_are_recorded_not_logged_at_info(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tabular run with the default explain.metrics skips mask_mass and sensitive_share
    for each method: four INFO lines on every Adult run before; now DEBUG, and the
    reasons stay in explain.json."""
    caplog.set_level(logging.DEBUG, logger="dq")
    dq.train(
        make_cfg("dataset=adult", "model=mlp", "explain.metrics=[sparseness,mask_mass,sensitive_share]"),
        tmp_path / "run",
        console=QUIET,
    )
    skips = [record for record in caplog.records if "skipped a metric" in record.getMessage()]
    assert len(skips) == 4 and {record.levelno for record in skips} == {logging.DEBUG}
    record = read_json(tmp_path / "run" / "explanations" / "explain.json")
    assert record["methods"]["saliency"]["skipped"] == {
        "mask_mass": "the data has no annotation masks",
        "sensitive_share": "the sensitive attribute is not a model input (dataset.include_sensitive=false)",
    }
