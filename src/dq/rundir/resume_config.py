"""The ``resume`` key: a resumed run keeps the config it was started with.

Resuming continues a run exactly, so the config it continues with must be the one saved
in its ``.hydra/config.yaml``. One change is allowed: ``trainer.epochs`` may grow, to
extend a run. ``trainer.devices`` says how many processes train it, not what is trained
(the global batch stays ``trainer.batch_size``): a run may continue on more or fewer. ``resumed_config`` checks the overrides given on a ``dq-train resume=<dir>``
command line against the saved config; ``config_conflict`` compares two whole configs
(what ``dq.runner.train(cfg, run_dir, resume=True)`` is handed against what is saved).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dq.errors import DQUserError

GROWABLE = "trainer.epochs"  # the one key a resumed run may change, upwards only
NOT_COMPARED = ("resume", "hydra")  # top-level keys that do not describe the run
FREE = ("trainer.devices",)  # how the run is computed, not what: free to change on resume
_ABSENT = object()


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values of a plain container by dotted key (lists are leaves)."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _plain(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return {key: value for key, value in data.items() if key not in NOT_COMPARED}


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else str(value)


def _grow_only(saved: int, given: int) -> None:
    if given < saved:
        raise DQUserError(
            f"{GROWABLE}={given} is fewer than the run's saved {GROWABLE}={saved}; when resuming it may only grow"
        )


def _conflict(key: str, saved: Any, given: Any) -> DQUserError:
    return DQUserError(
        f"{key}={_show(given)} conflicts with the run's saved {key}={_show(saved)}; "
        f"when resuming only {GROWABLE} may change (to grow)"
    )


def config_conflict(saved: DictConfig, given: DictConfig) -> None:
    """Refuse ``given`` unless it equals ``saved`` but for a larger ``trainer.epochs``.

    Raises:
        DQUserError: one line naming the first differing key and both values.
    """
    old, new = _flat(_plain(saved)), _flat(_plain(given))
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if key == GROWABLE and a is not _ABSENT and b is not _ABSENT:
            _grow_only(int(a), int(b))
        elif a != b and key not in FREE:
            raise _conflict(key, a, b)


def _saved_choice(key: str, saved: DictConfig, saved_choices: Mapping[str, Any], listed: bool) -> Any:
    """What the run chose for config group ``key``: Hydra's recorded choice, else (a list
    group such as ``regularizer``, or a run started from Python) the names in its node."""
    if key in saved_choices:
        return saved_choices[key]
    node = OmegaConf.select(saved, key, default=None)
    if listed:
        return list(node.keys()) if isinstance(node, DictConfig) else []
    return node.get("name", _ABSENT) if isinstance(node, DictConfig) else _ABSENT


def resumed_config(
    saved: DictConfig,
    given: DictConfig,
    overrides: Sequence[str],
    *,
    saved_choices: Mapping[str, Any],
    group_keys: Sequence[str],
) -> DictConfig:
    """The saved config, with ``trainer.epochs`` from ``overrides`` when it grows.

    ``given`` is the config these ``overrides`` composed (Hydra's task overrides of the
    ``resume=`` command line); ``group_keys`` the config groups of this invocation (Hydra's
    runtime choices), whose overrides are compared by the choice they make, and
    ``saved_choices`` the run's own (its .hydra/hydra.yaml). ``resume=`` and ``hydra...``
    overrides are not the run's and are skipped.

    Raises:
        DQUserError: one line naming a conflicting key with its saved and given values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged = OmegaConf.create(OmegaConf.to_container(saved, resolve=False))
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in NOT_COMPARED or key.startswith("hydra"):
            continue
        if override.is_delete():
            raise DQUserError(f"~{key}: a resumed run keeps its saved config; nothing can be deleted from it")
        value = override.value()
        listed = isinstance(value, list)
        if key in group_keys or (listed and isinstance(OmegaConf.select(given, key), DictConfig)):
            chosen = [str(v) for v in value] if listed else str(value)
            before = _saved_choice(key, saved, saved_choices, listed)
            if before != chosen:
                raise _conflict(key, before, chosen)
            continue
        before = OmegaConf.select(saved, key, default=_ABSENT)
        now = OmegaConf.select(given, key, default=_ABSENT)
        if key == GROWABLE and before is not _ABSENT:
            _grow_only(int(before), int(now))
            OmegaConf.update(merged, key, int(now))
            continue
        if key in FREE and now is not _ABSENT:
            OmegaConf.update(merged, key, now, force_add=True)
            continue
        plain_before = OmegaConf.to_container(before) if OmegaConf.is_config(before) else before
        plain_now = OmegaConf.to_container(now) if OmegaConf.is_config(now) else now
        if plain_before != plain_now:
            raise _conflict(key, plain_before, plain_now)
    return merged


def _skipped_before_composing(override: Any) -> bool:
    """Overrides ``saved_values_conflict`` leaves to ``resumed_config``: not the run's
    (``resume``, ``hydra...``), free or growable keys, deletions and sweeps."""
    key = override.key_or_group
    return (
        key in NOT_COMPARED
        or key.startswith("hydra")
        or key in FREE
        or key == GROWABLE
        or override.is_delete()
        or override.is_sweep_override()
    )


def saved_values_conflict(saved: DictConfig, overrides: Sequence[str]) -> None:
    """Refuse, before Hydra composes anything, an override of a value the saved run holds
    with another value. A key the run has but the default composition lacks (a term of
    ``+experiment=fair_adv``: ``regularizer.fairness.weight``) would otherwise stop Hydra
    as an unknown key, although the run has it; a group's choice or a node is left to
    ``resumed_config``, which compares them once composed.

    Raises:
        DQUserError: one line naming the key with its saved and given values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if _skipped_before_composing(override):
            continue
        key = override.key_or_group
        try:
            before = OmegaConf.select(saved, key, default=_ABSENT)
        except OmegaConfBaseException:  # an interpolation the saved file cannot resolve alone
            continue
        if before is _ABSENT or OmegaConf.is_config(before):
            continue
        value = override.value()
        if value != before:
            raise _conflict(key, before, value)
