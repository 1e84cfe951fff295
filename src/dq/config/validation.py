"""Range checks of config schemas, with the config path taken from where the node sits.

A schema checks its own fields in a ``validate`` method and names only the field
(``require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")``); ``typed`` turns a config
node into its dataclass, walks the nested dataclasses and prefixes each error with the
node's place in the run config, so ``trainer.early_stopping.patience must be >= 1, got 0``
is written by no validator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

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


def validate_tree(obj: Any, where: str) -> None:
    """Run ``validate()`` on ``obj`` and every dataclass nested in it, children first.

    Raises:
        DQUserError: one line, ``<where>.<field path>.<key> <message>``.
    """
    for item in dataclasses.fields(obj):
        child = getattr(obj, item.name)
        if dataclasses.is_dataclass(child) and not isinstance(child, type):
            validate_tree(child, f"{where}.{item.name}")
    check = getattr(obj, "validate", None)
    if check is None:
        return
    try:
        check()
    except ConfigValueError as error:
        raise DQUserError(f"{where}.{error.key} {error.message}") from error


def typed(where: str, schema: type, node: Any) -> Any:
    """``node`` merged onto ``schema``, turned into its dataclass and validated.

    ``where`` is the node's path in the run config (``trainer``, ``regularizer.lora``).

    Raises:
        DQUserError: an unknown key, a wrong type or an out-of-range value, in one line.
    """
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as error:
        raise DQUserError(f"{where}: {str(error).splitlines()[0]}") from error
    validate_tree(obj, where)
    return obj
