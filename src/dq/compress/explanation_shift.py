"""How far a compression moved the explanations: the same attribution method on the
same test examples, for the original model and for the compressed one (or, for an int8
model, its float twin with fake quantisation, which has gradients).

Both models explain the same class of each example, the original's prediction, so the
model is the only thing that differs. Per example, Spearman's rho of |attribution| (on
tabular data over the features present in the input), then the mean over examples:
``dq.explain.quality.mean_rank_correlation`` as behind ``randomization_rho``, so the two
numbers share a scale (a rho near the run's ``randomization_rho`` means the compressed
model is explained about as differently as a re-initialised one). Where the data has
annotation masks or the sensitive attribute is a model input, ``mask_mass`` and
``sensitive_share`` are computed for both models on those examples (``dq.explain.quality``'s metrics). Caveat: on sparse images
integrated gradients (input × gradient) is exactly 0 on blank pixels for both models, and
those ties hold its rho near 1 (0.998 against saliency's 0.66, mnist5k CNN at 90% sparsity). The examples are the first
``explain.n_samples`` of the test split, as in the run's own explanations.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from dq import metric_keys as keys
from dq.config.explain import ExplainConfig
from dq.data_records import DatasetMeta, InputStats, Split, Splits
from dq.explain.methods import Method, attribute, lookup
from dq.explain.quality import Explained, judge, mean_rank_correlation, randomized_copy
from dq.explain.run import QUIET, check_explain, gradient_context
from dq.explain.space import Space, build_space, train_stats
from dq.inference import eval_mode

SHARES = ["mask_mass", "sensitive_share"]  # each computed where the data has it


def explanation_shift(
    original: nn.Module, compressed: nn.Module, splits: Splits, cfg: ExplainConfig, device: torch.device, seed: int
) -> dict[str, dict[str, float]]:
    """``{"compressed": ..., "original": ...}``: for each method of ``cfg.methods``,
    ``explain/<method>/spearman`` (compressed side only) and the applicable
    ``explain/<method>/<share>`` of each model. ``compressed`` must have gradients.

    Raises:
        DQUserError: a method that cannot explain either model (``check_explain``).
    """
    meta = splits.meta
    names = check_explain(cfg, meta, original)
    check_explain(cfg, meta, compressed)
    n = min(cfg.n_samples, len(splits.test))
    chosen = splits.test.batch(slice(0, n)).to(device)
    train = train_stats(meta, splits.train.x)  # one read of the training split for every space
    out: dict[str, dict[str, float]] = {"compressed": {}, "original": {}}
    rng_devices = [device] if device.type == "cuda" else []
    with (
        eval_mode(original),
        eval_mode(compressed),
        torch.random.fork_rng(devices=rng_devices),
        gradient_context(original, device),
        gradient_context(compressed, device),
        warnings.catch_warnings(),
    ):
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        with torch.no_grad():
            target = original(chosen.x).argmax(dim=1)
        for name in names:
            method = lookup(name)
            before = _explain(method, original, meta, train, chosen, target, cfg, seed)
            after = _explain(method, compressed, meta, train, chosen, target, cfg, seed)
            spearman = mean_rank_correlation(before.magnitudes(), after.magnitudes(), before.compared())
            out["compressed"][keys.explain(name, "spearman")] = spearman
            for side, explained in (("original", before), ("compressed", after)):
                values, _skipped = judge(explained, SHARES)
                out[side].update({keys.explain(name, key): values[key] for key in SHARES if key in values})
    return out


def _explain(
    method: Method,
    model: nn.Module,
    meta: DatasetMeta,
    train: InputStats | None,
    chosen: Split,
    target: torch.Tensor,
    cfg: ExplainConfig,
    seed: int,
) -> Explained:
    """``method``'s attributions of ``model`` on ``chosen`` for ``target``, drawn after
    seeding with ``seed`` (so a sampling method draws the same noise for both models);
    ``train`` is the training inputs' statistics (``dq.explain.space.train_stats``)."""

    def rebuild(m: nn.Module) -> Space:
        return build_space(m, meta, chosen.x, train, cfg)

    space = rebuild(model)
    torch.manual_seed(seed)
    attribution = attribute(method, space, target, cfg)
    return Explained(method, space, target, attribution, cfg, rebuild, lambda: randomized_copy(model), chosen.mask)
