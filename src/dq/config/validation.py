"""Range checks of config schemas, with the config path taken from where the node sits.

A schema checks its own fields in a ``validate`` method and names only the field
(``require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")``); ``typed`` turns a config
node into its dataclass, walks the nested dataclasses and prefixes each error with the
node's place in the run config, so ``trainer.early_stopping.patience must be >= 1, got 0``
is written by no validator.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from dq.errors import DQUserError


class ConfigValueError(ValueError):
    """A field of a schema holds a value outside its allowed range.

    Args:
        key: the field's name in its own node (``lr``), not its full path.
        message: what is wrong and what is allowed (``must be > 0, got -1``).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key} {message}")
        self.key = key
        self.message = message


def require(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigValueError(key, message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigValueError(key, message)


INT64_MAX = 2**63 - 1


def check_number(key: str, value: Any) -> None:
    """What every number of every schema must be, whatever its own range: finite (NaN and
    ±inf pass most range checks or none: ``nan > 0`` is False but ``inf > 0`` is True) and,
    for an integer, within 64 bits (torch, NumPy and the files a run writes hold no more).
    A list is checked item by item."""
    for item in value if isinstance(value, list | tuple) else [value]:
        if isinstance(item, float):
            require(math.isfinite(item), key, f"must be a finite number, got {item}")
        elif isinstance(item, int) and not isinstance(item, bool):
            require(abs(item) <= INT64_MAX, key, f"must be within ±{INT64_MAX} (64 bits), got {item}")


def validate_tree(obj: Any, where: str) -> None:
    """Check every number of ``obj`` (``check_number``), then run ``validate()`` on ``obj``
    and every dataclass nested in it, children first.

    Raises:
        DQUserError: one line, ``<where>.<field path>.<key> <message>``.
    """
    for item in dataclasses.fields(obj):
        child = getattr(obj, item.name)
        if dataclasses.is_dataclass(child) and not isinstance(child, type):
            validate_tree(child, f"{where}.{item.name}")
        try:
            check_number(item.name, child)
        except ConfigValueError as error:
            raise DQUserError(f"{where}.{error.key} {error.message}") from error
    check = getattr(obj, "validate", None)
    if check is None:
        return
    try:
        check()
    except ConfigValueError as error:
        raise DQUserError(f"{where}.{error.key} {error.message}") from error


def unknown_key_message(full_key: str, allowed: Sequence[str]) -> str:
    """One line for a key no schema knows: the nearest valid key, then all of them.

    ``unknown key 'trainer.epochz' (nearest: 'trainer.epochs'); keys of trainer: epochs, ...``
    """
    where, _, name = full_key.rpartition(".")
    nearest = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    hint = f" (nearest: {'.'.join(filter(None, [where, nearest[0]]))!r})" if nearest else ""
    return f"unknown key {full_key!r}{hint}; keys of {where or 'the config'}: {', '.join(allowed)}"


def unknown_override_message(error: BaseException) -> str | None:
    """The ``unknown_key_message`` line for a composition error (Hydra's ``Could not override
    'trainer.epoch'``) whose cause is a key no config node has; None for any other error.
    dq-train and dq-table both say a misspelt override this way."""
    cause = error.__cause__
    if not isinstance(cause, ConfigKeyError | ConfigAttributeError) or not cause.full_key:
        return None
    parent = cause.parent_node
    return unknown_key_message(cause.full_key, [str(k) for k in parent] if parent is not None else [])


def _fields_at(schema: type, path: list[str]) -> list[str]:
    """The field names of the dataclass that ``path`` (field names) leads to in ``schema``."""
    for name in path:
        field = next((f for f in dataclasses.fields(schema) if f.name == name), None)
        if field is None or not isinstance(field.default_factory, type):  # type: ignore[misc]
            return []
        schema = field.default_factory  # type: ignore[assignment]
    return [f.name for f in dataclasses.fields(schema)]


_CONTEXT = re.compile(r"(\n[ \t]+(full_key|reference_type|object_type)[:=][^\n]*)+\s*$")


def omegaconf_message(error: BaseException) -> str:
    """OmegaConf's message in one line: without the ``full_key: ...`` lines it appends, and
    with any line break inside a quoted value written as ``\\n`` (a value may hold one)."""
    text = _CONTEXT.sub("", str(error)).strip()
    return text.replace("\r", "\\r").replace("\n", "\\n")


def interpolation_hint(error: BaseException) -> str:
    """What a failed ``${...}`` must be instead, for a message about one (else nothing)."""
    if "nterpolation" not in str(error):
        return ""
    return "; an interpolation ${...} must name a key of the config (${seed}) or a resolver with its arguments"


@functools.cache
def _structured(schema: type) -> DictConfig:
    """The schema as an OmegaConf node, built once: ``OmegaConf.merge`` copies its first
    argument, so the cached node is never changed (building it took ~11 ms a call, a third
    of ``typed``'s time)."""
    return OmegaConf.structured(schema)


def typed(where: str, schema: type, node: Any) -> Any:
    """``node`` merged onto ``schema``, turned into its dataclass and validated.

    ``where`` is the node's path in the run config (``trainer``, ``regularizer.lora``).
    The node is merged as plain values: a key added with ``+`` or ``++`` on the command
    line sits in Hydra's node beside the schema's own, and merging the node as it is would
    carry it through unnoticed; as plain values the schema refuses it.

    Raises:
        DQUserError: an unknown key (naming the nearest valid one), a wrong type or an
            out-of-range value, in one line.
    """
    try:
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        obj = OmegaConf.to_object(OmegaConf.merge(_structured(schema), values))
    except ConfigKeyError as error:
        path = str(error.full_key or error.key or "").split(".")
        if not path[-1]:
            raise DQUserError(f"{where}: {str(error).splitlines()[0]}") from error
        allowed = _fields_at(schema, path[:-1])
        raise DQUserError(unknown_key_message(".".join([where, *path]), allowed)) from error
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        at = f"{where}.{key}" if key and not str(key).startswith(where) else (key or where)
        raise DQUserError(f"bad value for {at}: {omegaconf_message(error)}{interpolation_hint(error)}") from error
    validate_tree(obj, where)
    return obj
