"""The explanation step of a run: attributions on the first ``n_samples`` test examples,
their pictures and their quality metrics.

``explain_run`` takes a trained model and the splits and never trains: it puts the model
in eval mode for the attributions and restores the mode it found, changes no weight,
and draws its noise from a forked, seeded RNG (the caller's RNG state is untouched).

Writes ``<run_dir>/explanations/<method>.npz`` (inputs, attributions, labels,
predictions, indices; text adds tokens), ``<method>.png`` (and ``<method>.html`` for
text) and ``explain.json`` (the config used, the metrics, the skipped metrics and why).
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dq import metric_keys as keys
from dq.config.explain import ExplainConfig
from dq.data_records import DatasetMeta, Split, Splits
from dq.errors import DQUserError
from dq.explain import pictures
from dq.explain.baselines import check_baseline
from dq.explain.methods import attribute, lookup, refusal
from dq.explain.quality import Explained, check_metrics, judge, randomized_copy
from dq.explain.space import EXPLANATION, Space, build_space, train_stats
from dq.inference import eval_mode
from dq.modalities import modality_of
from dq.modalities.text import embedding_layer
from dq.rundir.write import atomic_write, write_json

EXPLANATIONS = "explanations"
log = logging.getLogger(__name__)

# captum's notices for what this module does on purpose (inputs without requires_grad,
# DeepLift's temporary hooks, one LIME / Kernel SHAP surrogate per example).
QUIET = (
    r".*did not already require gradients.*",
    r".*Setting forward, backward hooks and attributes on non-linear.*",
    r".*multiple inputs for Lime / Kernel SHAP.*",
)


def check_explain(cfg: ExplainConfig, meta: DatasetMeta, model: nn.Module) -> list[str]:
    """The methods to run (duplicates dropped), or a DQUserError in one line: an unknown
    method or metric, a baseline the data has no meaning for, a method that cannot
    explain this model. Cheap: call it before training."""
    if not cfg.methods:
        raise DQUserError("explain.methods is empty; name at least one method or set explain.enabled=false")
    names = list(dict.fromkeys(str(name) for name in cfg.methods))
    methods = [lookup(name) for name in names]
    check_metrics([str(name) for name in cfg.metrics], meta)
    check_baseline(cfg.baseline, meta)
    if modality_of(meta).tokens:
        embedding_layer(model, EXPLANATION)
    parameter = next(model.parameters())
    dtype = torch.long if modality_of(meta).tokens else parameter.dtype
    example = torch.zeros((1, *meta.input_shape), dtype=dtype, device=parameter.device)
    for method in methods:
        reason = refusal(method, model, meta.modality, example)
        if reason is not None:
            raise DQUserError(reason)
    return names


def gradient_context(model: nn.Module, device: torch.device | str) -> AbstractContextManager:
    """What attributions run under. cuDNN's RNN backward works in training mode only
    ("cudnn RNN backward can only be called in training mode"); switching the model to
    train mode would also switch on dropout (and batch statistics), which changes the
    function being explained. So on CUDA, for a model that holds an RNN, cuDNN is turned
    off for the attribution calls: PyTorch's native RNN kernels differentiate in eval
    mode, at some speed cost. Elsewhere nothing changes."""
    if torch.device(device).type == "cuda" and any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return torch.backends.cudnn.flags(enabled=False)
    return nullcontext()


def explain_run(
    model: nn.Module,
    splits: Splits,
    meta: DatasetMeta,
    cfg: ExplainConfig,
    run_dir: Path,
    device: torch.device | str,
    seed: int,
) -> dict[str, float]:
    """Explain ``model`` on the first ``cfg.n_samples`` test examples with each method of
    ``cfg.methods``; write the files; return ``explain/<method>/<metric>`` keys,
    ``time/explain/<method>_per_sample_s`` (attribution only) and ``time/explain_s``.

    Raises:
        DQUserError: for an unknown method or metric, or one that does not apply (see
            ``check_explain``), before anything is computed.
    """
    start = time.perf_counter()
    device = torch.device(device)
    names = check_explain(cfg, meta, model)
    metric_names = list(dict.fromkeys(str(name) for name in cfg.metrics))
    out_dir = Path(run_dir) / EXPLANATIONS
    n = min(cfg.n_samples, len(splits.test))
    if n == 0:
        raise DQUserError(f"the test split of {meta.name} is empty: nothing to explain")
    chosen = splits.test.batch(slice(0, n)).to(device)
    train = train_stats(meta, splits.train.x)  # stays where it is: only its mean and std are used
    metrics: dict[str, float] = {}
    record: dict = {"config": asdict(cfg), "samples": n, "methods": {}}  # enums are str
    rng_devices = [device] if device.type == "cuda" else []

    with (
        eval_mode(model),
        torch.random.fork_rng(devices=rng_devices),
        gradient_context(model, device),
        warnings.catch_warnings(),
    ):
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        with torch.no_grad():
            predictions = model(chosen.x).argmax(dim=1)

        def rebuild(m: nn.Module) -> Space:
            return build_space(m, meta, chosen.x, train, cfg)

        @cache
        def random_model() -> nn.Module:
            torch.manual_seed(seed + 1)
            return randomized_copy(model)

        space = rebuild(model)
        for name in names:
            method = lookup(name)
            torch.manual_seed(seed)
            began = time.perf_counter()
            attribution = attribute(method, space, predictions, cfg)
            seconds = time.perf_counter() - began
            explained = Explained(method, space, predictions, attribution, cfg, rebuild, random_model, chosen.mask)
            values, skipped = judge(explained, metric_names)
            # DEBUG: the default explain.metrics names metrics that apply to some data only
            # (masks, sensitive columns), so a skip is the normal case, not news; explain.json
            # keeps each reason under "skipped".
            for reason in skipped.values():
                log.debug("explain %s: skipped a metric: %s", name, reason)
            metrics.update({keys.explain(name, key): value for key, value in values.items()})
            metrics[keys.explain_seconds_per_sample(name)] = seconds / n
            record["methods"][name] = {"metrics": values, "skipped": skipped, "attribution_s": seconds}
            _write_method(out_dir, name, chosen, predictions, explained, meta, cfg)

    metrics[keys.time("explain_s")] = time.perf_counter() - start
    record["time_s"] = metrics[keys.time("explain_s")]
    write_json(out_dir / "explain.json", record)
    return metrics


def _write_method(
    out_dir: Path,
    name: str,
    chosen: Split,
    predictions: torch.Tensor,
    explained: Explained,
    meta: DatasetMeta,
    cfg: ExplainConfig,
) -> None:
    attributions = explained.per_token.detach().float().cpu().numpy()
    arrays: dict[str, np.ndarray] = {
        "inputs": chosen.x.detach().cpu().numpy(),
        "attributions": attributions,
        "labels": chosen.y.detach().cpu().numpy(),
        "predictions": predictions.detach().cpu().numpy(),
        "indices": np.arange(len(chosen), dtype=np.int64),
    }
    if explained.attribution.delta is not None:
        arrays["delta"] = explained.attribution.delta.detach().float().cpu().numpy()
    if modality_of(meta).tokens:
        arrays["tokens"] = np.asarray([[meta.vocab[i] for i in row] for row in arrays["inputs"].tolist()])
    save_npz(out_dir / f"{name}.npz", arrays)
    if cfg.images:
        pictures.draw(out_dir, name, arrays, meta)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` written atomically (through a buffer: numpy would add
    ``.npz`` to a temporary file name)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
