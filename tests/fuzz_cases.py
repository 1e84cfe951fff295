"""Fuzz cases for dq-train's command line, generated from the schema itself (issue 11,
point 2), and the check each case must pass. Shared by tests/test_fuzz_config.py.

The schema is walked, not listed: the run-wide groups' dataclasses (``dq.spec``'s
``SINGLE_SCHEMAS`` and ``RunConfig``'s scalars), every choice's own schema (dataset
families, models, optimizers, regularizers, loggers: their registries), each key with
its type and enum choices; the config groups and their choices come from ``conf/``.

A case is a set of group choices (``dataset=adult model=cnn regularizer=[fairness]``)
and key overrides (``trainer.epochs=nan``, ``+trainer.epochz=3``). ``check`` runs it
through what ``dq-train`` runs before training: Hydra's compose, then
``dq.runner.prepare_run`` (schema, device, data, model, objective, explanations,
loggers); an error must be one that ``dq.cli.refusal`` turns into dq-train's one line
(exit 2), the line must have no line break and name a key or choice of the case, and the
refused run's directory must be gone. Anything else is a bug: the exception propagates.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import shutil
import tempfile
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from dq.cli import refusal
from dq.config.optimizer import OPTIMIZER_SCHEMAS
from dq.config.overrides import LIST_GROUPS, check_overrides, config_groups
from dq.config.run import RunConfig
from dq.rundir.layout import HYDRA_DIR
from dq.runner import prepare_run
from dq.spec import PLUGIN_GROUPS, SINGLE_SCHEMAS, compose

GROUPS = config_groups()
# Words by which a refusal says what is allowed (or what to do instead).
ALLOWED = re.compile(
    r"allowed|must|expected|keys of|needs?|only|use |write|set |choose|could not be converted|"
    r"takes one|has no|is not|not supported|does not|cannot|no [a-z]|invalid|install|either|remove",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Key:
    """One key of the schema: its full path, its kind and, for an enum, its choices."""

    path: str
    kind: str  # int | float | bool | str | enum | list[int] | list[float] | list[str]
    optional: bool = False
    choices: tuple[str, ...] = ()


def _kind(hint: Any) -> tuple[str, bool, tuple[str, ...]]:
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
        origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return f"list[{getattr(item, '__name__', 'str')}]", optional, ()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "enum", optional, tuple(str(m.value) for m in hint)
    if hint is Any:
        return "any", optional, ()
    return hint.__name__, optional, ()


def walk(schema: type, prefix: str) -> list[Key]:
    """Every key of ``schema`` (nested dataclasses included) under ``prefix``."""
    hints = typing.get_type_hints(schema)
    keys: list[Key] = []
    for item in dataclasses.fields(schema):
        hint = hints[item.name]
        path = f"{prefix}.{item.name}" if prefix else item.name
        if dataclasses.is_dataclass(hint):
            keys += walk(hint, path)  # type: ignore[arg-type]
        elif item.name != "name":  # a choice's name is its choice, not a key to set
            kind, optional, choices = _kind(hint)
            if kind != "any":
                keys.append(Key(path, kind, optional, choices))
    return keys


def run_keys() -> list[Key]:
    """The keys every run has: the run-wide groups' and the run's own scalars."""
    keys = [key for group, schema in SINGLE_SCHEMAS.items() for key in walk(schema, group)]
    scalars = [f for f in dataclasses.fields(RunConfig) if f.name in ("seed", "experiment_name")]
    return keys + [Key(f.name, "int" if f.name == "seed" else "str") for f in scalars]


def choice_keys(group: str, name: str) -> list[Key]:
    """The keys of one choice of a group with a schema per choice."""
    if group == "optimizer":
        return walk(OPTIMIZER_SCHEMAS[name], group)
    schema = PLUGIN_GROUPS[group].get(name).schema
    where = f"{group}.{name}" if group in LIST_GROUPS else group
    return walk(schema, where) if schema is not None else []


# ---------------------------------------------------------------------------------- values

HUGE_INTS = [2**63, -(2**63) - 1, 2**64, 10**30, -(10**40), 2**1000]
SPECIAL_FLOATS = ["nan", "inf", "-inf", "+inf", "NaN", "1e400", "-1e400", "1e-400", "1e308"]
HOSTILE_TEXT = [
    "''",
    "' '",
    "'" + "x" * 5000 + "'",
    "'é'",
    "'日本語'",
    "'\U0001f600'",
    "'a\\'b'",
    "'<script>alert(1)</script>'",
    "'; touch marker'",
    "'../../etc'",
    "'${oops}'",
    "'${seed}'",
    "${oc.env:HOME}",
    "${now:}",
    "null",
]
HOSTILE_RAW = ["é", "a b", "{a:1}", "[1,[2]]", "[]", "{}", "[nan]", "[inf,1]", "true", "0x10", "1_000", "--1", "'"]


def quoted(text: str) -> str:
    """``text`` as a Hydra quoted string (its backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unicode_text() -> st.SearchStrategy[str]:
    characters = st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00")
    return st.text(characters, max_size=40)


def number_text(kind: str) -> st.SearchStrategy[str]:
    """Numbers of both signs and many sizes, near the usual limits (0, 1, 0.5) and far."""
    ints = st.one_of(st.integers(-3, 3), st.integers(-(10**6), 10**6), st.sampled_from(HUGE_INTS)).map(str)
    floats = st.one_of(
        st.floats(-2, 2, allow_nan=False).map(repr),
        st.sampled_from(["0", "0.0", "-0.0", "0.5", "1", "1.0", "1e-12", "1e12"]),
        st.sampled_from(SPECIAL_FLOATS),
    )
    return ints if kind == "int" else floats if kind == "float" else st.one_of(ints, floats)


def value_text(key: Key) -> st.SearchStrategy[str]:
    """Values for ``key``: of its own kind (in range or out), of other kinds, and hostile."""
    own: st.SearchStrategy[str]
    if key.kind in ("int", "float"):
        own = number_text(key.kind)
    elif key.kind == "bool":
        own = st.sampled_from(["true", "false", "True", "yes", "0", "1"])
    elif key.kind == "enum":
        own = st.one_of(st.sampled_from(key.choices), st.sampled_from([c.upper() for c in key.choices]))
    elif key.kind.startswith("list["):
        item = key.kind[5:-1]
        items = number_text(item) if item in ("int", "float") else unicode_text().map(quoted)
        own = st.lists(items, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
    else:
        own = st.one_of(unicode_text().map(quoted), st.from_regex(r"[a-z_/.]{1,12}", fullmatch=True))
    hostile = st.one_of(
        st.sampled_from(HOSTILE_TEXT), st.sampled_from(HOSTILE_RAW), number_text("any"), unicode_text().map(quoted)
    )
    return st.one_of(own, own, hostile)


def near(name: str) -> st.SearchStrategy[str]:
    """A key name one edit away from ``name`` (a typo), or any identifier."""
    typo = st.tuples(st.integers(0, max(len(name) - 1, 0)), st.sampled_from("abcdefghijklmnopqrstuvwxyz_")).map(
        lambda t: name[: t[0]] + t[1] + name[t[0] + 1 :]
    )
    return st.one_of(typo, st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True))


@dataclass
class Case:
    """Group choices and key overrides, in command-line order: groups first."""

    groups: tuple[str, ...]
    keys: tuple[str, ...] = ()
    names: set[str] = field(default_factory=set)  # what a refusal may name

    @property
    def overrides(self) -> list[str]:
        return [*self.groups, *self.keys]


def choices_of(groups: Sequence[str]) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for override in groups:
        name, _, value = override.lstrip("+").partition("=")
        chosen[name] = value.strip("[]").split(",") if value.startswith("[") else value
    return chosen


def any_groups(datasets: Sequence[str], models: Sequence[str], loggers: Sequence[str]) -> st.SearchStrategy:
    """Group choices drawn freely (often contradictory together: fairness on data without
    groups, a mask target on data without masks, an attack on text)."""

    @st.composite
    def draw_groups(draw: st.DrawFn) -> tuple[str, ...]:
        regularizers = draw(st.lists(st.sampled_from(GROUPS["regularizer"]), max_size=2, unique=True))
        chosen = draw(st.lists(st.sampled_from(loggers), min_size=1, max_size=2, unique=True))
        groups = [
            f"dataset={draw(st.sampled_from(datasets))}",
            f"model={draw(st.sampled_from(models))}",
            f"optimizer={draw(st.sampled_from(GROUPS['optimizer']))}",
            f"regularizer=[{','.join(regularizers)}]",
            f"logger=[{','.join(chosen)}]",
        ]
        if draw(st.booleans()):
            groups.append(f"scheduler={draw(st.sampled_from(GROUPS['scheduler']))}")
        return tuple(groups)

    return draw_groups()


MUTATIONS = ("value", "value", "value", "value", "unknown", "choice", "delete")


@st.composite
def cases(draw: st.DrawFn, groups_from: st.SearchStrategy, mutations: Sequence[str] = MUTATIONS) -> Case:
    """One case: group choices from ``groups_from``, then up to three ``mutations``: a key's
    value, an unknown key (plain, + or ++), an unknown choice, a deletion."""
    groups = draw(groups_from)
    chosen = choices_of(groups)
    keys = run_keys()
    for group in ("dataset", "model", "optimizer"):
        keys += choice_keys(group, chosen[group])
    for group in ("regularizer", "logger"):
        for name in chosen[group]:
            keys += choice_keys(group, name) if name else []
    case = Case(tuple(groups), names={str(v) for c in chosen.values() for v in ([c] if isinstance(c, str) else c)})
    case.names |= {"dataset", "model", "regularizer", "logger", "optimizer", "scheduler"}
    overrides: list[str] = ["explain.n_samples=2", "explain.sensitivity_samples=1"]  # small, if it validates
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(mutations))
        key = draw(st.sampled_from(keys))
        where, _, leaf = key.path.rpartition(".")
        case.names |= set(key.path.split("."))
        if kind == "value":
            overrides.append(f"{key.path}={draw(value_text(key))}")
        elif kind == "unknown":
            name = draw(near(leaf))
            case.names.add(name)
            prefix = draw(st.sampled_from(["", "+", "++"]))
            overrides.append(f"{prefix}{where + '.' if where else ''}{name}={draw(value_text(key))}")
        elif kind == "choice":
            group = draw(st.sampled_from(sorted(GROUPS)))
            bad = draw(st.sampled_from(["nope", "MLP", "adult,digits", "[adult,digits]", "x/y", "none", "''"]))
            case.names |= {group, *bad.strip("[]'").split(",")}
            overrides.append(f"{'+' if group == 'experiment' else ''}{group}={bad}")
        else:
            overrides.append(f"~{key.path}")
    case.keys = tuple(overrides)
    return case


# ------------------------------------------------------------------------ the dq-train path


class Composer:
    """Hydra's compose, made affordable for hundreds of cases: the group choices are
    composed by Hydra's compose API (``dq.spec.compose``, about 0.3 s each here, so cached
    by choices), then the key overrides are applied by Hydra's own code for them
    (``ConfigLoaderImpl._apply_overrides_to_config``, what its compose runs after the
    groups). A choice among a case's keys is composed with its groups.
    ``test_the_fast_composer_agrees_with_hydras_compose`` checks that both agree."""

    def __init__(self) -> None:
        self.bases: dict[tuple[str, ...], DictConfig | BaseException] = {}

    def __call__(self, case: Case) -> DictConfig:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra.core.override_parser.overrides_parser import OverridesParser

        check_overrides(case.overrides)
        parsed = OverridesParser.create().parse_overrides(list(case.keys))  # Hydra parses all first
        chosen = tuple(item.input_line for item in parsed if item.key_or_group in GROUPS)
        rest = [item for item in parsed if item.key_or_group not in GROUPS]
        groups = (*case.groups, *chosen)  # a choice among the keys is composed with the groups
        if groups not in self.bases:
            try:
                self.bases[groups] = compose(list(groups))
            except Exception as error:
                self.bases[groups] = error
        base = self.bases[groups]
        if isinstance(base, BaseException):
            raise base
        cfg = copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config(rest, cfg)
        return cfg


@dataclass
class Tally:
    """What a fuzz run saw: cases tried, validated, refused; a traceback fails the test."""

    tried: int = 0
    validated: int = 0
    refused: int = 0
    lines: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.tried} cases: {self.validated} validated, {self.refused} refused in one line, 0 tracebacks "
            f"({self.wall_s:.0f} s, {self.cpu_s:.0f} s of CPU)"
        )


def check(case: Case, make_cfg: Callable[[Case], DictConfig], tally: Tally) -> str | None:
    """Run ``case`` as dq-train would up to training; return the refusal line or None.

    Raises whatever is not a user error (the fuzzer's find), and AssertionError for a
    refusal of more than one line, one that names nothing of the case, or a refused run
    that left its directory behind."""
    tally.tried += 1
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "outputs" / "exp" / "run"
        try:
            cfg = make_cfg(case)
            (run_dir / HYDRA_DIR).mkdir(parents=True)  # Hydra makes it once composed, before the task
            if "logger" in cfg and "mlflow" in cfg.logger:  # its store in the case's own directory
                OmegaConf.update(cfg, "logger.mlflow.tracking_uri", f"sqlite:///{tmp}/mlflow.db")
            built = prepare_run(cfg, run_dir)
        except Exception as error:
            line = refusal(error)
            if line is None:
                raise
            assert line.isprintable(), f"{case.overrides}: a refusal of several lines (or control characters): {line!r}"
            assert line.strip(), f"{case.overrides}: an empty refusal"
            assert any(name and name in line for name in case.names), f"{case.overrides}: names nothing: {line!r}"
            assert ALLOWED.search(line), f"{case.overrides}: does not say what is allowed: {line!r}"
            assert not run_dir.exists(), f"{case.overrides}: the refused run left {sorted(run_dir.iterdir())}"
            tally.refused += 1
            tally.lines.append(line)
            return line
        finally:
            torch.set_num_threads(1)  # a case may have set trainer.num_threads
        built.loggers.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        tally.validated += 1
        return None


# ------------------------------------------------------------------ Hydra's own grammar

# Keys of Hydra's own node, allowed (the run's directories are fixed by the harness: their
# values are another check's) and not: callbacks, logging, output subdirectory, job name.
HYDRA_KEYS = [
    "hydra.sweep.subdir",
    "hydra.launcher.n_jobs",
    "hydra.launcher.foo",
    "hydra.launcher._target_",
    "hydra.sweeper.n_trials",
    "hydra.sweeper.max_batch_size",
    "hydra.sweeper.params",
    "hydra.sweeper.sampler",
    "hydra.sweeper.sampler._target_",
    "hydra.output_subdir",
    "hydra.job.name",
    "hydra.job.chdir",
    "hydra.job.env_set.LD_PRELOAD",
    "hydra.job_logging.root.level",
    "hydra.hydra_logging.root.level",
    "hydra.callbacks.x",
    "hydra.callbacks.x._target_",
    "hydra.callbacks.sweep_summary._target_",
    "hydra.searchpath",
    "hydra.mode",
    "hydra.verbose",
    "hydra",
]
# Groups whose choice is a file name: conf/'s, Hydra's plugins', and ones that do not exist.
CHOICE_GROUPS = [
    "dataset",
    "+experiment",
    "experiment",
    "paper",
    "model",
    "hydra/launcher",
    "hydra/sweeper",
    "hydra/job_logging",
    "hydra/output",
    "schema/dataset",
    "nope/group",
]
PATHS = [
    "..",
    "../../..",
    "../../conf/dataset/digits",
    "./x",
    "x/y",
    "{outside}",
    "{outside}/trav",
    "/dev/null",
    "/proc/self/environ",
    "/dev/stdout",
    "'" + "p" * 300 + "'",
    "''",
    "digits",
    "basic",
    "null",
    "NUL",
    "con",
]
RESOLVERS = [
    "${oc.env:HOME}",
    "'${oc.env:HOME}'",
    "${now:%Y}",
    "'${now:}'",
    "${nope:x}",
    "'${oc.decode:1}'",
    "${hydra:runtime.cwd}",
    "'${oc.create:{a:1}}'",
    "${}",
    "'${seed}'",
    "${oc.select:nope,1}",
]
CODE = [
    "{_target_: builtins.exec, _args_: ['print(1)']}",
    "{_target_: torch.load, f: '{outside}/evil.pt', weights_only: false}",
    "{_target_: optuna.samplers.RandomSampler}",
    "{x: {_target_: os.system}}",
    "[{_target_: builtins.eval}]",
    "{+hydra.callbacks.x: '{_target_: os.system}'}",
    "{seed: '1,2'}",
]
FLAGS = [
    ["--cfg", "job"],
    ["--cfg", "hydra"],
    ["--cfg", "bogus"],
    ["-c", "all"],
    ["--cfg", "job", "-p", "nope"],
    ["--cfg", "job", "-p", "trainer"],
    ["-c", "hydra", "-p", "hydra.run"],
    ["--info"],
    ["--info", "bogus"],
    ["--resolve"],
    ["--experimental-rerun", "{outside}/config.pickle"],
    ["--bogus-flag"],
    ["-x"],
    ["-cd", "{outside}"],
    ["-cp", "{outside}"],
    ["-cn", "trav"],
    ["-m"],
    ["--run"],
    ["-m", "--cfg", "job"],
]


@st.composite
def hydra_argvs(draw: st.DrawFn) -> list[str]:
    """A command line over Hydra's grammar: its keys (set, +, ++, ~), group choices that are
    paths, resolvers, code-naming dicts, long and special-file values, nulls, and flags
    placed before or after the overrides. ``{outside}`` stands for a folder beside the
    case's own (filled in by ``run_argv``)."""
    items: list[list[str]] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["hydra", "hydra", "choice", "flag", "value"]))
        value = draw(
            st.one_of(
                st.sampled_from(PATHS),
                st.sampled_from(RESOLVERS),
                st.sampled_from(CODE),
                st.sampled_from(["1", "true", "null", "-1", "1e400", "a,b", "[]", "{}"]),
            )
        )
        if kind == "hydra":
            prefix = draw(st.sampled_from(["", "", "+", "++", "~"]))
            key = draw(st.sampled_from(HYDRA_KEYS))
            items.append([f"~{key}" if prefix == "~" else f"{prefix}{key}={value}"])
        elif kind == "choice":
            items.append([f"{draw(st.sampled_from(CHOICE_GROUPS))}={draw(st.sampled_from([*PATHS, 'null']))}"])
        elif kind == "flag":
            items.append(list(draw(st.sampled_from(FLAGS))))
        else:
            key = draw(
                st.sampled_from(["seed", "experiment_name", "trainer.epochs", "explain.methods", "dataset.root"])
            )
            items.append([f"{key}={value}"])
    flags_first = draw(st.booleans())
    flags = [arg for item in items if item[0].startswith("-") for arg in item]
    overrides = [arg for item in items if not item[0].startswith("-") for arg in item]
    return [*flags, *overrides] if flags_first else [*overrides, *flags]


@dataclass
class ArgvTally:
    """What a fuzz run of whole command lines saw; the lead quotes its summary."""

    cases: int = 0
    ran: int = 0
    refused: int = 0
    tracebacks: list[str] = field(default_factory=list)
    wrote_outside: list[str] = field(default_factory=list)
    bad_refusals: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.cases} cases: {self.ran} ran or printed, {self.refused} refused in one line, "
            f"{len(self.tracebacks)} tracebacks, {len(self.wrote_outside)} wrote outside their directory, "
            f"{len(self.bad_refusals)} refusals not one 'dq-train: error:' line"
        )


RUN_BASE = [
    "dataset=digits",
    "dataset.limit=64",
    "model=mlp",
    "trainer.epochs=1",
    "trainer.progress=false",
    "explain.enabled=false",
    "eval.bootstrap=0",
    "report.html=false",
    "report.model_card=false",
]


def run_argv(argv: list[str], root: Path, tally: ArgvTally) -> None:
    """``dq-train <argv>`` in this process, started in ``root``/a/b/c/work with its run and
    sweep directories inside it, ``{outside}`` being ``root``/outside (holding a pickle and
    a checkpoint that write ``root``/marker when loaded, and a trav.yaml naming them as a
    callback). Records a traceback (an exception out of train_main, or one printed), a
    refusal that is not one line, and any file written under ``root`` but outside work/."""
    import contextlib
    import io
    import os
    import pickle
    import sys

    from dq.cli import train_main

    work, outside = root / "a" / "b" / "c" / "work", root / "outside"
    work.mkdir(parents=True)
    (outside / "experiment").mkdir(parents=True)
    torch.save({"x": _Marker(root / "marker")}, outside / "evil.pt")
    (outside / "config.pickle").write_bytes(pickle.dumps(_Marker(root / "marker")))
    (outside / "trav.yaml").write_text(
        f"hydra:\n  callbacks:\n    x: {{_target_: torch.load, f: '{outside}/evil.pt', weights_only: false}}\n"
    )
    before = {p for p in root.rglob("*")}
    args = [arg.replace("{outside}", str(outside)) for arg in argv]
    dirs = [f"hydra.run.dir={work}/run", f"hydra.sweep.dir={work}/sweep"]
    where = next((i for i, arg in enumerate(args) if "=" in arg or arg.startswith("~")), len(args))
    args = [*args[:where], *RUN_BASE, *dirs, *args[where:]] if where < len(args) else [*args, *RUN_BASE, *dirs]
    tally.cases += 1
    err, old_cwd, old_argv = io.StringIO(), os.getcwd(), sys.argv
    full_error = os.environ.pop("HYDRA_FULL_ERROR", None)
    try:
        os.chdir(work)
        sys.argv = ["dq-train", *args]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = 0
            try:
                train_main()
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as error:  # what dq-train would print as a traceback
        tally.tracebacks.append(f"{argv}: {type(error).__name__}: {first_line_of(error)}")
        code = -1
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        torch.set_num_threads(1)
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    lines = err.getvalue().splitlines()
    if code >= 0 and "Traceback" in err.getvalue():
        tally.tracebacks.append(f"{argv}: printed a traceback")
    elif code == 2:
        if len(lines) == 1 and lines[0].startswith("dq-train: error: ") and lines[0].isprintable():
            tally.refused += 1
        else:
            tally.bad_refusals.append(f"{argv}: {lines[:3]}")
    elif code == 0:
        tally.ran += 1
    elif code > 0:
        tally.bad_refusals.append(f"{argv}: exit {code}: {lines[-1:]}")
    new = {p for p in root.rglob("*") if p.is_file()} - before
    outside_work = sorted(str(p.relative_to(root)) for p in new if work not in p.parents)
    if outside_work:
        tally.wrote_outside.append(f"{argv}: {outside_work}")


def first_line_of(error: BaseException) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), "")


class _Marker:
    """Unpickling this writes ``path`` (a payload: code that runs when a file is loaded)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "code from a file ran"))
