"""The flat keys of metrics.json, metrics.jsonl and the loggers: their one home.

Producers build keys here and readers (reports, tables, sweeps, the console) parse them
here, so a key's spelling is decided once and no other module re-parses a key with a
regex. The families (docs/design.md, "Metric keys"):

    <split>/<metric>                         test/accuracy, val/loss, train/loss (SPLITS)
    <split>/<scope>_accuracy/<member>        test/group_accuracy/<g>, test/class_accuracy/<c>
    <split>/worst_<scope>_accuracy           test/worst_group_accuracy: the smallest of them
    test/<attack>_accuracy@<eps>             robust (PGD), autoattack (standard) or apgd (its APGD attacks only), at radius eps
    test/group_<attack>_accuracy/<g>@<eps>   and test/worst_group_<attack>_accuracy@<eps>
    test/<attack>_dp_diff@<eps>              the fairness gaps on attacked predictions
    <key>/ci_low, <key>/ci_high              a key's bootstrap 95% interval
    explain/<method>/<metric>                an explanation method's quality metrics
    compress/<key>                           compress/original/<key>, compress/delta/<key>
    params/<name>, time/<name>               parameter counts; seconds (never compared)
    time/<attack>_per_example_s              an evaluation attack's seconds per example and radius

Pure Python with no dq import, so every layer may use it (``from dq import metric_keys
as keys``; ``keys.test(keys.ACCURACY)``, ``keys.robust_accuracy(eps)``, ``keys.parse(key)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Families: a key's first part.
TEST, VAL, TRAIN = "test", "val", "train"
SPLITS = (TEST, VAL, TRAIN)
EXPLAIN, COMPRESS, PARAMS, TIME = "explain", "compress", "params", "time"

# Measures that appear in several families (clean, per group, attacked, per split).
ACCURACY, LOSS, ECE = "accuracy", "loss", "ece"
DP_DIFF, EO_DIFF = "dp_diff", "eo_diff"  # demographic-parity and equalized-odds gaps
GAPS = (DP_DIFF, EO_DIFF)

# Scopes of a per-member accuracy (test/<scope>_accuracy/<member>), and attacks.
GROUP, CLASS = "group", "class"
# PGD's keys say "robust"; "autoattack" is standard AutoAttack only, "apgd" its cheap version
# (APGD-CE and APGD-T, dq.attacks.autoattack): never one key for both.
ROBUST, AUTOATTACK, APGD = "robust", "autoattack", "apgd"
ATTACKS = (ROBUST, AUTOATTACK, APGD)

# A bootstrap 95% interval sits beside its metric: <key>/ci_low, <key>/ci_high.
CI_LOW, CI_HIGH = "ci_low", "ci_high"


def metric(family: str, name: str) -> str:
    """``<family>/<name>``: a metric of any family (``metric(prefix, ACCURACY)``)."""
    return f"{family}/{name}"


def test(name: str) -> str:
    """``test/<name>``: a metric of the final model on the test split."""
    return metric(TEST, name)


def val(name: str) -> str:
    """``val/<name>``: a per-epoch metric on the validation split (metrics.jsonl)."""
    return metric(VAL, name)


def train(name: str) -> str:
    """``train/<name>``: a per-epoch training metric, or a fact about the training."""
    return metric(TRAIN, name)


def params(name: str) -> str:
    """``params/<name>``: a parameter count."""
    return metric(PARAMS, name)


def time(name: str) -> str:
    """``time/<name>``: seconds; never compared between runs for equality."""
    return metric(TIME, name)


def compress(key: str) -> str:
    """``compress/<key>``: a measure of the compressed model."""
    return metric(COMPRESS, key)


def compress_original(key: str) -> str:
    """``compress/original/<key>``: the original model's value beside the compressed one."""
    return compress(f"original/{key}")


def compress_delta(key: str) -> str:
    """``compress/delta/<key>``: compressed minus original."""
    return compress(f"delta/{key}")


def attack_seconds(attack: str) -> str:
    """``time/<attack>_s``: an evaluation attack's seconds over every radius."""
    return time(f"{attack}_s")


def attack_seconds_per_example(attack: str) -> str:
    """``time/<attack>_per_example_s``: an evaluation attack's seconds per example and radius,
    the cost that ``eval.robust.limit`` multiplies."""
    return time(f"{attack}_per_example_s")


def explain(method: str, metric: str) -> str:
    """``explain/<method>/<metric>``: a quality metric of one explanation method."""
    return f"{EXPLAIN}/{method}/{metric}"


def explain_seconds_per_sample(method: str) -> str:
    """``time/explain/<method>_per_sample_s``: one attribution's seconds."""
    return time(f"{EXPLAIN}/{method}_per_sample_s")


def key_part(name: str) -> str:
    """A group or class name as one segment of a flat metric key ("T-shirt/top" → "T-shirt-top")."""
    return name.replace("/", "-")


def eps_tag(eps: float) -> str:
    """An attack radius as keys write it (``f"{eps:g}"``: 0.1, 8, 1e-05)."""
    return f"{eps:g}"


def member_accuracy(scope: str, member: str, family: str = TEST) -> str:
    """``<family>/<scope>_accuracy/<member>``: one group's (or class's) accuracy."""
    return metric(family, f"{scope}_{ACCURACY}/{key_part(member)}")


def group_accuracy(group: str, family: str = TEST) -> str:
    """``test/group_accuracy/<group>``."""
    return member_accuracy(GROUP, group, family)


def class_accuracy(cls: str) -> str:
    """``test/class_accuracy/<class>``."""
    return member_accuracy(CLASS, cls)


def worst_accuracy(scope: str, family: str = TEST) -> str:
    """``<family>/worst_<scope>_accuracy``: the smallest of the scope's per-member accuracies
    (``test/worst_group_accuracy``, ``val/worst_group_accuracy``, ``test/worst_class_accuracy``)."""
    return metric(family, f"worst_{scope}_{ACCURACY}")


def robust_accuracy(tag: str, attack: str = ROBUST) -> str:
    """``test/<attack>_accuracy@<tag>``: accuracy on attacked test examples (``tag``: eps_tag)."""
    return test(f"{attack}_{ACCURACY}@{tag}")


def group_robust_accuracy(group: str, tag: str, attack: str = ROBUST) -> str:
    """``test/group_<attack>_accuracy/<group>@<tag>``."""
    return test(f"{GROUP}_{attack}_{ACCURACY}/{key_part(group)}@{tag}")


def worst_group_robust_accuracy(tag: str, attack: str = ROBUST) -> str:
    """``test/worst_group_<attack>_accuracy@<tag>``."""
    return test(f"worst_{GROUP}_{attack}_{ACCURACY}@{tag}")


def robust_gap(gap: str, tag: str, attack: str = ROBUST) -> str:
    """``test/<attack>_<gap>@<tag>``: a fairness gap (DP_DIFF, EO_DIFF) of attacked predictions."""
    return test(f"{attack}_{gap}@{tag}")


def ci_low(key: str) -> str:
    """``<key>/ci_low``: the lower bound of ``key``'s bootstrap 95% interval."""
    return f"{key}/{CI_LOW}"


def ci_high(key: str) -> str:
    """``<key>/ci_high``: the upper bound of ``key``'s bootstrap 95% interval."""
    return f"{key}/{CI_HIGH}"


def is_interval(key: str) -> bool:
    """``<key>/ci_low`` or ``<key>/ci_high``: a bound of another metric's interval."""
    return key.rpartition("/")[2] in (CI_LOW, CI_HIGH)


def interval_of(key: str) -> str | None:
    """The metric whose interval bound ``key`` is (``test/dp_diff/ci_low`` → ``test/dp_diff``);
    None for a key that is no bound."""
    return key.rpartition("/")[0] if is_interval(key) else None


# Written only here: a split key is <metric>[/<member>][@<eps>] (before any interval
# bound), and a metric is [<scope>_][<attack>_]<measure> when its measure is accuracy or a
# gap; a scope is one word or worst_<word>, never an attack's name.
_SPLIT_KEY = re.compile(r"^(?P<metric>[^/@]+)(?:/(?P<member>[^/]+?))?(?:@(?P<eps>[^@/]+))?$")
_ATTACK = "|".join(ATTACKS)
_METRIC = re.compile(
    rf"^(?:(?P<scope>(?!(?:{_ATTACK})_)(?:worst_)?[a-z]+)_)?(?:(?P<attack>{_ATTACK})_)?"
    rf"(?P<measure>{'|'.join((ACCURACY, *GAPS))})$"
)


@dataclass(frozen=True)
class MetricKey:
    """A key read back into its parts. For a split key (test, val, train) ``metric`` is the
    name before any member, radius or bound, and ``scope``/``attack``/``measure`` split it
    where its measure is accuracy or a gap (``group_robust_accuracy`` → group, robust,
    accuracy); otherwise ``measure`` is the metric. For ``explain/<method>/<metric>`` and
    the other families ``metric`` is the rest of the key, verbatim."""

    family: str
    metric: str
    member: str | None = None  # the group or class of a per-member key
    eps: str | None = None  # the attack radius, as written after "@"
    bound: str | None = None  # CI_LOW or CI_HIGH: this key is a bound of another's interval
    method: str | None = None  # explain's method
    scope: str | None = None  # group, class, worst_group, ...
    attack: str | None = None  # robust, autoattack, apgd
    measure: str | None = None  # accuracy, dp_diff, eo_diff, loss, ...


def parse(key: str) -> MetricKey:
    """``key``'s parts; a key no family describes comes back with only ``family`` (its first
    part) and ``metric`` (the rest), so callers can always ask what they need."""
    family, _, rest = key.partition("/")
    if family == EXPLAIN:
        method, slash, name = rest.partition("/")
        return MetricKey(family, name, method=method) if slash and method and name else MetricKey(family, rest)
    if family not in SPLITS:
        return MetricKey(family, rest)
    bound = rest.rpartition("/")[2] if is_interval(rest) else None
    match = _SPLIT_KEY.match(rest.rpartition("/")[0] if bound else rest)
    if match is None:
        return MetricKey(family, rest)
    parts = _METRIC.match(match["metric"])
    return MetricKey(
        family,
        match["metric"],
        member=match["member"],
        eps=match["eps"],
        bound=bound,
        scope=parts["scope"] if parts else None,
        attack=parts["attack"] if parts else None,
        measure=parts["measure"] if parts else match["metric"],
    )


def robust_eps(key: str) -> str | None:
    """The radius tag of a ``test/robust_accuracy@<eps>`` key (PGD's overall robust
    accuracy); None for every other key, its interval bounds included."""
    eps = parse(key).eps
    return eps if eps is not None and key == robust_accuracy(eps) else None


def group_of(key: str) -> str | None:
    """The group of a ``test/group_accuracy/<group>`` key; None for every other key."""
    member = parse(key).member
    return member if member is not None and key == group_accuracy(member) else None


def eps_order(tag: str) -> tuple[float, str]:
    """Sort key for radius tags: by value, tags that are no number last."""
    try:
        return float(tag), tag
    except ValueError:
        return float("inf"), tag
