"""A search space written in Hydra's override grammar, turned into Optuna distributions.

``interval(a,b)`` is a float range, ``tag(log, interval(a,b))`` the same on a log scale,
``tag(int, interval(a,b))`` an integer one; ``range(a,b[,step])`` is the integers (or the
floats, with a float step) Hydra's basic sweeper would visit, ``b`` excluded; ``choice(...)``
and ``shuffle(...)`` are categorical (lists as choices are kept in override syntax,
``choice([64],[128,64])``). A plain value is no search at all: it is passed to every trial.

Later lines win over earlier ones for the same key, so a sweep override on the command line
replaces the preset's entry and a plain value there fixes the parameter (what
hydra-optuna-sweeper does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException

from dq.errors import DQUserError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution


@dataclass(frozen=True)
class SearchSpace:
    """What Optuna samples (``distributions``) and what every trial gets as typed
    (``fixed``: key → the override line), in the order the lines came."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]
    order: tuple[str, ...]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The Hydra overrides of one trial whose sampled values are ``params``."""
        lines = []
        for key in self.order:
            lines.append(self.fixed[key] if key in self.fixed else f"{key}={override_value(params[key])}")
        return lines


def override_value(value: Any) -> str:
    """A sampled value as Hydra's grammar reads it back (choices arrive already encoded)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def parse_search_space(lines: Sequence[str]) -> SearchSpace:
    """Parse ``key=value`` lines (the preset's ``params`` first, then the command line).

    Raises:
        DQUserError: a line that is not valid override grammar, or a sweep Optuna cannot sample.
    """
    try:
        overrides = OverridesParser.create().parse_overrides(list(lines))
    except HydraException as error:
        raise DQUserError(f"bad search space: {str(error).splitlines()[0]}") from None
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    order: list[str] = []
    for override in overrides:
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if key not in order:
            order.append(key)
        if override.is_sweep_override():
            distributions[key] = to_distribution(override)
        else:
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return SearchSpace(distributions, fixed, tuple(order))


def to_distribution(override: Override) -> BaseDistribution:
    """One sweep override (``choice``, ``range``, ``interval``) as an Optuna distribution."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key = override.get_key_element()
    value = override.value()
    try:
        if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        if isinstance(value, RangeSweep):
            numbers = list(override.sweep_iterator())
            if not numbers:
                raise ValueError(f"{override.get_value_element_as_str()} is empty")
            log = "log" in value.tags
            if all(isinstance(n, int) for n in numbers):
                return IntDistribution(numbers[0], numbers[-1], step=int(value.step), log=log)
            return FloatDistribution(numbers[0], numbers[-1], step=None if log else value.step, log=log)
        if isinstance(value, IntervalSweep):
            log = "log" in value.tags
            if "int" in value.tags:
                return IntDistribution(int(value.start), int(value.end), log=log)
            return FloatDistribution(float(value.start), float(value.end), log=log)
    except ValueError as error:
        raise DQUserError(f"bad search space for {key}: {error}") from None
    raise DQUserError(
        f"bad search space for {key}: {override.get_value_element_as_str()}; "
        "allowed: interval(a,b), tag(log, interval(a,b)), tag(int, interval(a,b)), range(a,b[,step]), choice(...)"
    )
