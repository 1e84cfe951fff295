"""model=text_encoder: the packaged all-MiniLM-L6-v2 read by our own torch encoder, its own
tokenizer chosen by the model, LoRA on its attention, and dq's text features on it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import dq
from dq import data, models
from dq.compress.command import compress_directory
from dq.data.tokenizer import pretrained_ids
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.models.text_encoder import TextEncoderConfig, device_check, encoder_folder, load_encoder
from dq.objectives.lora.config import LoRAConfig
from dq.objectives.lora.layer import merge_lora
from dq.objectives.lora.transform import LoRATransform
from dq.rundir.read import read_jsonl
from dq.spec import to_spec

SENTENCES = ["A gripping, beautifully acted film.", "Dull and far too long; I left early."]
# Computed once with transformers 5.25.0 (pip install --target /tmp/encoder-tf --no-deps
# transformers==5.25.0 regex; USE_HUB_KERNELS=0 HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/encoder-tf):
#   m = BertModel.from_pretrained(<packaged folder>).eval(); the ids below (tokenizer.json,
#   truncation and padding to 16); h = m(input_ids=ids, attention_mask=(ids != 0)).last_hidden_state;
#   e = (h * mask).sum(1) / mask.sum(1); printed e[:, :4], e[:, 100] and e.norm(dim=1).
REFERENCE_FIRST4 = [
    [0.011298771016299725, -0.3051568269729614, -0.01793714612722397, 0.014070921577513218],
    [0.08963832259178162, -0.0783727839589119, 0.4930531084537506, 0.44972681999206543],
]
REFERENCE_DIM100 = [0.15955431759357452, 0.25034287571907043]
REFERENCE_NORMS = [5.615636348724365, 4.393723011016846]
FIRST_IDS = [101, 1037, 13940, 1010, 17950, 6051, 2143, 1012, 102, 0, 0, 0, 0, 0, 0, 0]
QV = ["layers.*.attention.query", "layers.*.attention.value"]
TINY = ("model=text_encoder", "dataset.max_length=32", "explain.enabled=false")


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return load_encoder(TextEncoderConfig(freeze=False), pad_index=0, num_classes=2).eval()


def tokenizer_path() -> str:
    return str(encoder_folder(TextEncoderConfig()) / "tokenizer.json")


def text_meta(length: int = 16) -> DatasetMeta:
    return DatasetMeta("rotten_tomatoes", "text", (length,), 2, ("rotten", "fresh"), vocab=("x",) * 30522)


def sentence_ids() -> torch.Tensor:
    return pretrained_ids(SENTENCES, tokenizer_path(), 16).ids


def test_mean_pooled_embeddings_match_transformers_reference_values(encoder) -> None:
    ids = sentence_ids()
    assert ids[0].tolist() == FIRST_IDS
    with torch.no_grad():
        embedded = encoder.embed(ids)
    assert embedded.shape == (2, 384)
    torch.testing.assert_close(embedded[:, :4], torch.tensor(REFERENCE_FIRST4), rtol=0, atol=1e-5)
    torch.testing.assert_close(embedded[:, 100], torch.tensor(REFERENCE_DIM100), rtol=0, atol=1e-5)
    torch.testing.assert_close(embedded.norm(dim=1), torch.tensor(REFERENCE_NORMS), rtol=0, atol=1e-4)
    # Padding changes nothing: the same sentences cut at their own length embed the same.
    short = pretrained_ids(SENTENCES, tokenizer_path(), 14).ids
    with torch.no_grad():
        torch.testing.assert_close(encoder.embed(short), embedded, rtol=0, atol=1e-5)


def test_a_wrong_hash_or_folder_is_one_line() -> None:
    wrong = "0" * 64
    with pytest.raises(DQUserError, match=rf"sha256 53aa5117\w+ differs from model.sha256={wrong}") as error:
        load_encoder(TextEncoderConfig(sha256=wrong), 0, 2)
    assert "\n" not in str(error.value)
    with pytest.raises(DQUserError, match=r"lacks config.json, model.safetensors, tokenizer.json"):
        encoder_folder(TextEncoderConfig(path="/nonexistent/folder"))
    with pytest.raises(DQUserError, match=r"exceeds the encoder's 512 positions"):
        models.build(TextEncoderConfig(), text_meta(600))


def test_the_model_chooses_its_tokenizer(make_cfg) -> None:
    spec = to_spec(make_cfg(*TINY, "dataset=rotten_tomatoes"))
    assert spec.dataset.tokenizer == tokenizer_path()
    splits = data.build(spec.dataset, 0)
    assert len(splits.meta.vocab) == 30522 and splits.meta.pad_index == 0
    assert splits.meta.vocab[101] == "[CLS]" and (splits.train.x[:, 0] == 101).all()
    assert splits.train.x.shape[1] == 32
    # dq's word tokenizer where the model has none; a different file is refused.
    assert to_spec(make_cfg("model=rnn", "dataset=rotten_tomatoes")).dataset.tokenizer is None
    with pytest.raises(DQUserError, match=r"dataset.tokenizer=/x.json: model text_encoder reads text with its own"):
        to_spec(make_cfg(*TINY, "dataset=rotten_tomatoes", "dataset.tokenizer=/x.json"))
    with pytest.raises(DQUserError, match=r"dataset.tokenizer=/x.json: no such file"):
        data.build(to_spec(make_cfg("model=rnn", "dataset=rotten_tomatoes", "dataset.tokenizer=/x.json")).dataset, 0)
    with pytest.raises(DQUserError, match=r"dataset.tokenizer=.*config.json: not a Hugging Face tokenizer.json"):
        pretrained_ids(["a"], str(encoder_folder(TextEncoderConfig()) / "config.json"), 8)


def test_freeze_trains_the_head_only() -> None:
    head_only = load_encoder(TextEncoderConfig(), 0, 2)
    full = load_encoder(TextEncoderConfig(freeze=False), 0, 2)
    assert models.count_parameters(head_only) == (22_566_146, 770)
    assert models.count_parameters(full) == (22_566_146, 22_566_146)


def test_lora_on_query_and_value_starts_at_the_base_and_merges(encoder) -> None:
    model = load_encoder(TextEncoderConfig(freeze=False), 0, 2).eval()
    model.head.load_state_dict(encoder.head.state_dict())
    ids = sentence_ids()
    with torch.no_grad():
        base = model(ids)
    base_note, summary = LoRATransform(LoRAConfig(rank=8, alpha=16.0, target=QV)).apply(model)
    assert base_note.startswith("LoRA base: the model as built, random unless pretrained (model=text_encoder)")
    assert summary.startswith("LoRA: 74,498 of 22,639,874 parameters trainable (0.33%)")
    with torch.no_grad():
        assert torch.equal(model(ids), base)  # B starts at zero
        for name, parameter in model.named_parameters():
            if name.endswith("lora_B.weight"):
                parameter.normal_(0, 0.05)
        adapted = model(ids)
        assert (adapted - base).abs().max() > 1e-3
        merged = merge_lora(model)
        torch.testing.assert_close(merged(ids), adapted, rtol=0, atol=1e-5)
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_the_gpu_check_runs_on_the_cpu_too() -> None:
    """scripts' GPU check calls device_check("cuda"); on the CPU the same code path agrees
    with itself exactly and trains under bf16 autocast without a non-finite value."""
    result = device_check("cpu", batch=2, length=12)
    assert result["max_abs_diff"] == 0.0 and result["seconds_per_step"] > 0


@pytest.fixture(scope="module")
def head_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A head-only run on 64 Rotten Tomatoes snippets: teacher and compression subject."""
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("encoder") / "head"
    dq.train(compose_config([*TINY, "dataset=rotten_tomatoes"]), run_dir=run_dir)
    return run_dir


@pytest.mark.slow
def test_int8_quantisation_and_pruning_of_the_encoder(head_run: Path) -> None:
    _, quantized = compress_directory(head_run, ["compress=quantize"])
    assert quantized["compress/size_bytes"] < 0.7 * quantized["compress/original/size_bytes"]
    assert abs(quantized["compress/delta/test/accuracy"]) <= 0.1
    _, pruned = compress_directory(head_run, ["compress=prune", "compress.amount=0.5"])
    assert math.isfinite(pruned["compress/test/accuracy"])
    with pytest.raises(DQUserError, match=r"compress.kind=structured cannot prune model=text_encoder on text data"):
        compress_directory(head_run, ["compress=prune", "compress.kind=structured"])


@pytest.mark.slow
def test_distillation_into_a_small_student_reads_the_teachers_tokens(make_cfg, head_run: Path, tmp_path) -> None:
    student = ("model=rnn", "dataset=rotten_tomatoes", "dataset.max_length=32", "explain.enabled=false")
    teacher = ("regularizer=[distill]", f"regularizer.distill.teacher={head_run}")
    metrics = dq.train(make_cfg(*student, *teacher, f"dataset.tokenizer={tokenizer_path()}"), run_dir=tmp_path / "s")
    assert metrics["params/total"] < 0.1 * 22_566_146
    assert read_jsonl(tmp_path / "s" / "metrics.jsonl")[0]["train/distill"] > 0
    with pytest.raises(
        DQUserError,
        match=r"the teacher's vocabulary \(30522 tokens\) differs.*dataset.tokenizer=<its tokenizer.json>\)$",
    ):
        dq.train(make_cfg(*student, *teacher), run_dir=tmp_path / "words")


@pytest.mark.slow
def test_lora_adversarial_fairness_and_explanations_on_reviews(make_cfg, tmp_path: Path) -> None:
    """Everything dq does on text in one run of the GPU preset on CPU: LoRA r=8, PGD in the
    embedding space, the demographic-parity penalty on the age groups, robust evaluation and
    integrated gradients with the token picture."""
    cfg = make_cfg(
        "+experiment=minilm_lora",
        "dataset=reviews",
        "dataset.max_length=32",
        "trainer.epochs=1",
        "regularizer=[lora,adversarial,fairness]",
        "regularizer.adversarial.eps=0.05",
        "regularizer.adversarial.steps=2",
        "eval.robust.eps=[0.01,0.05]",
        "eval.robust.steps=3",
        "explain.methods=[integrated_gradients]",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    assert metrics["params/trainable"] == 74_498
    assert metrics["params/trainable_fraction"] == pytest.approx(74_498 / (22_566_146 + 73_728))
    epoch = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert epoch["train/adversarial"] > 0 and math.isfinite(epoch["train/fairness"])
    assert {"test/group_accuracy/<35", "test/group_accuracy/>=55", "test/dp_diff"} <= set(metrics)
    assert metrics["test/robust_accuracy@0.05"] <= metrics["test/robust_accuracy@0.01"] <= metrics["test/accuracy"]
    explained = tmp_path / "run" / "explanations"
    assert (explained / "integrated_gradients.png").stat().st_size > 0
    assert "[CLS]" in (explained / "integrated_gradients.html").read_text()
