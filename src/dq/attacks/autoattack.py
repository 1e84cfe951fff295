"""AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", https://arxiv.org/abs/2003.01690) through the
authors' own PyPI package ``pyautoattack``, under L∞ or L2, for robust *evaluation* only, in
one of two versions (``eval.robust.attack``), each under its own metric keys so that a reader
never takes the cheap one for the standard one:

- ``autoattack``: the standard version (APGD-CE, APGD-T, FAB-T, Square), the one papers
  report. Its cost is per example and large (FAB-T and Square's 5,000 queries on the
  examples that survive): 148–176 s on 100 digits against 0.5 s for PGD-20;
- ``apgd``: its two gradient attacks only (APGD-CE, then APGD-T on the survivors),
  pyautoattack's ``version="custom"`` with the standard version's settings. It leaves out
  the ensemble's guards against gradient masking (FAB-T, and Square, which needs no
  gradient), so it can read higher than the standard version on a model whose gradients
  mislead; it is a cheaper check, not a substitute for the number papers report.

Either costs seconds per example and radius, written as ``time/<attack>_per_example_s``;
``eval.robust.limit`` bounds how many examples it attacks.

AutoAttack searches a [0, 1] box and moves every input. dq's threat model is the ε-ball
that the data's modality (dq.modalities) allows: clipped to ``attack_bounds`` (images:
``meta.valid_range``), unclipped (series, tabular), and its ``fixed_inputs`` (tabular:
the one-hot columns) never move. ``BoxMap`` wraps the model
so that AutoAttack's box maps onto that threat model exactly, instead of refusing it:

- ``x = low + scale·z`` with one scale for every input, so an ε-ball in x is an
  (ε/scale)-ball in z under both norms, and AutoAttack runs at ``eps / scale``;
- with a valid range (a, b): low = a, scale = b − a: the box *is* the valid range;
- without one: per input, low = min over the attacked examples − 2ε and one scale = the
  widest input's range + 4ε, so x ± ε never reaches the box's walls: the box's clipping
  never binds and the attack is unclipped, as PGD's;
- tabular columns that must not move (the one-hot ones, 0 or 1) are rounded back in the
  wrapper: an attack moves them by at most ε < 0.5, so rounding returns each example's
  clean value, and every point AutoAttack can reach is a point of dq's ball (and each
  point of dq's ball is reachable). Hence ε ≥ 0.5 is refused on such data.

Token data (text) is refused: AutoAttack needs a float input it can move.

AutoAttack's targeted attacks need classes to target: APGD-T and FAB-T target the
``min(9, K − 1)`` most likely other classes; APGD-T's targeted DLR loss reads the 4th
largest logit, so with fewer than 4 classes (all of dq's tabular and series tasks are
binary) it is left out: the standard ensemble is APGD-CE, FAB-T and Square, the cheap one
APGD-CE alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from dq.config.attack import AttackNorm
from dq.config.eval import RobustAttack
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.inference import eval_mode
from dq.modalities import modality_of

ROUNDING_LIMIT = 0.5  # fixed 0/1 columns are rounded back: the attack may move them by less
NORMS = {AttackNorm.linf: "Linf", AttackNorm.l2: "L2"}
TARGETED_MIN_CLASSES = 4  # APGD-T's targeted DLR loss reads the 4th largest logit


def attacks_of(attack: RobustAttack | str, num_classes: int) -> list[str]:
    """pyautoattack's names of the attacks that ``eval.robust.attack=attack`` runs, in order,
    on ``num_classes`` classes."""
    targeted = num_classes >= TARGETED_MIN_CLASSES
    if RobustAttack(attack) == RobustAttack.apgd:
        return ["apgd-ce", "apgd-t"] if targeted else ["apgd-ce"]
    return ["apgd-ce", "apgd-t", "fab-t", "square"] if targeted else ["apgd-ce", "fab-t", "square"]


def autoattack_refusal(attack: RobustAttack | str, meta: DatasetMeta, eps: list[float]) -> str | None:
    """Why AutoAttack (``attack``: either version) cannot evaluate ``meta``'s data at radii
    ``eps`` (one line), or None."""
    modality = modality_of(meta)
    if modality.tokens:
        return (
            f"eval.robust.attack={attack} does not apply to text ({meta.name}): AutoAttack moves a float "
            f"input and token ids are discrete; use eval.robust.attack=pgd (it attacks the embedding output)"
        )
    if modality.fixed_inputs(meta) is not None:
        big = [e for e in eps if e >= ROUNDING_LIMIT]
        if big:
            return (
                f"eval.robust.attack={attack} on {meta.name} keeps the one-hot columns fixed by rounding them, "
                f"which needs every eps < {ROUNDING_LIMIT}; got {big[0]:g}"
            )
    return None


def check_autoattack(attack: RobustAttack | str, meta: DatasetMeta, eps: list[float]) -> None:
    """Raise DQUserError (one line) where AutoAttack cannot run; cheap, call it before training."""
    reason = autoattack_refusal(attack, meta, eps)
    if reason is not None:
        raise DQUserError(reason)


class BoxMap(nn.Module):
    """The model seen from AutoAttack's [0, 1] box: ``z ↦ model(low + scale·z)``, with the
    fixed columns rounded back to 0/1.

    Square (one of the four attacks) moves square windows of an image [N, C, H, W], so flat
    inputs (tabular [N, F], series [N, C, T]) are laid out in the box as one square channel
    [N, 1, S, S], S = ⌈√(numel)⌉, whose trailing S² − numel entries the model never sees.
    Moving them changes nothing; under L2 it only spends budget, so it can weaken the
    attack, never let it leave dq's ball.

    Args:
        model: ``x -> logits``.
        low: [1, *input_shape], the box's corner in x.
        scale: the box's side in x (the same for every input).
        fixed: bool [1, *input_shape], inputs that must not move (0/1 valued), or None.
    """

    def __init__(self, model: nn.Module, low: torch.Tensor, scale: float, fixed: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("low", low)
        self.scale = scale
        self.fixed = fixed
        self.shape = tuple(low.shape[1:])
        numel = low[0].numel()
        self.side = 0 if len(self.shape) == 3 else math.ceil(math.sqrt(numel))

    @classmethod
    def for_data(cls, model: nn.Module, x: torch.Tensor, meta: DatasetMeta, eps: float) -> BoxMap:
        """The map for attacking examples ``x`` [N, ...] of ``meta``'s data at radius ``eps``."""
        modality = modality_of(meta)
        fixed = modality.fixed_inputs(meta)
        fixed = None if fixed is None else fixed.to(x.device)
        bounds = modality.attack_bounds(meta)
        if bounds is not None:
            low_value, high_value = bounds
            low = torch.full((1, *x.shape[1:]), float(low_value), device=x.device)
            return cls(model, low, float(high_value - low_value), fixed)
        margin = 2.0 * eps
        low = x.amin(dim=0, keepdim=True) - margin
        scale = float((x.amax(dim=0, keepdim=True) - low).max()) + margin
        return cls(model, low, scale, fixed)

    def to_box(self, x: torch.Tensor) -> torch.Tensor:
        """Examples x [N, *shape] as points of the box (a square layout for flat inputs)."""
        z = ((x - self.low) / self.scale).clamp(0.0, 1.0)
        if not self.side:
            return z
        flat = z.flatten(1)
        padded = torch.zeros((len(z), self.side * self.side), dtype=z.dtype, device=z.device)
        padded[:, : flat.shape[1]] = flat
        return padded.view(len(z), 1, self.side, self.side)

    def from_box(self, z: torch.Tensor) -> torch.Tensor:
        """Points of the box back to examples [N, *shape]; fixed columns rounded to 0/1."""
        if self.side:
            z = z.flatten(1)[:, : self.low[0].numel()].view(len(z), *self.shape)
        x = self.low + self.scale * z
        if self.fixed is not None:
            x = torch.where(self.fixed, x.round(), x)  # round: zero gradient, the clean value
        return x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(self.from_box(z))


def build_autoattack(
    model: nn.Module,
    attack: RobustAttack | str,
    norm: str,
    eps: float,
    num_classes: int,
    seed: int,
    device: torch.device,
) -> Any:
    """pyautoattack's ``AutoAttack`` running :func:`attacks_of` ``attack``: its own
    ``version="standard"`` where that is the whole standard list, otherwise ``version="custom"``
    with the standard version's settings, set up for ``num_classes`` classes."""
    from pyautoattack import AutoAttack  # lazy: keeps `import dq` light

    targets = min(9, num_classes - 1)
    if RobustAttack(attack) == RobustAttack.autoattack and num_classes >= TARGETED_MIN_CLASSES:
        adversary = AutoAttack(model, eps=eps, norm=norm, seed=seed, version="standard", device=device)
    else:
        attacks = attacks_of(attack, num_classes)
        adversary = AutoAttack(model, eps=eps, norm=norm, seed=seed, version="custom", attacks=attacks, device=device)
        adversary.apgd.n_restarts = 1
        adversary.square.n_queries = 5000
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
    adversary.fab.n_restarts = 1
    adversary.verbose = False
    return adversary


def autoattack_predictions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    meta: DatasetMeta,
    attack: RobustAttack | str,
    norm: AttackNorm | str,
    eps: float,
    device: torch.device,
    batch_size: int,
    seed: int = 0,
) -> torch.Tensor:
    """Predicted classes [N] (CPU) on AutoAttack's examples of ``x`` at radius ``eps``
    (``attack``: the standard version or the cheap one): the clean prediction where the
    clean example is already wrong (AutoAttack does not attack those), the attacked one elsewhere.

    Seeded with ``seed``; the global RNG state is restored afterwards (pyautoattack reseeds
    torch's global generator). The model runs in eval mode, its mode restored.
    """
    check_autoattack(attack, meta, [eps])
    x, y = x.to(device), y.to(device)
    rng_devices = [device] if device.type == "cuda" else []
    with eval_mode(model), torch.random.fork_rng(devices=rng_devices), _quiet():
        box = BoxMap.for_data(model, x, meta, eps).to(device)
        scaled = eps / box.scale
        adversary = build_autoattack(box, attack, NORMS[AttackNorm(norm)], scaled, meta.num_classes, seed, device)
        _, y_adv = adversary.run_standard_evaluation(box.to_box(x), y, batch_size=batch_size)
    return y_adv.cpu()


@contextmanager
def _quiet() -> Iterator[None]:
    """pyautoattack's logger ("auto-attack") at ERROR while it runs: it announces its
    version and warns from checks (randomised or dynamic defences) that a run cannot act on."""
    logger = logging.getLogger("auto-attack")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
