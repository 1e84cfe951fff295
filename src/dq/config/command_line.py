"""dq-train's flags, read before Hydra runs with Hydra's own argument parser, so that a
mistake in them is one line (Hydra prints its usage, 8 lines) and the flags that load code
or configs from outside the package are refused: ``--experimental-rerun`` unpickles a
file, and ``--config-dir``/``--config-path``/``--config-name`` load YAML (whose
``hydra.callbacks`` Hydra instantiates) from anywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from dq.config.overrides import check_overrides
from dq.errors import DQUserError

# Flags that load a file: Hydra's pickle rerun, and configs from outside dq's conf/.
REFUSED_FLAGS = {
    "experimental_rerun": "--experimental-rerun unpickles a file (code could run); run the saved command again instead",
    "config_dir": "--config-dir loads configs from outside dq's conf/; use +experiment=<name> or overrides",
    "config_path": "--config-path loads configs from outside dq's conf/; use +experiment=<name> or overrides",
    "config_name": "--config-name picks another primary config; dq has one (conf/config.yaml): use +experiment=<name>",
}


def _refuse(message: str) -> NoReturn:
    """argparse's error, as dq's one line (argparse would print its usage and exit)."""
    if message.startswith("unrecognized arguments: ") and "=" in message:
        message += " (an override after the flags: dq-train -m key=value ..., not key=value -m)"
    raise DQUserError(f"{message}; see dq-train --hydra-help")


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` read by Hydra's own parser; DQUserError for what it would refuse."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = "dq-train"
    parser.error = _refuse  # type: ignore[method-assign]
    return parser.parse_args(list(argv))


def check_command_line(argv: Sequence[str]) -> argparse.Namespace:
    """Refuse, in one line, flags Hydra would refuse in many or that load files, and
    overrides that reach past the run's schema (dq.config.overrides); the parsed flags."""
    args = parse_flags(argv)
    for name, message in REFUSED_FLAGS.items():
        if getattr(args, name, None) is not None:
            raise DQUserError(message)
    if args.resolve and not (args.cfg or args.help):  # Hydra raises a ValueError for it
        raise DQUserError("--resolve only goes with --cfg or --help (dq-train --cfg job --resolve)")
    check_overrides(args.overrides)
    return args


def check_package(args: argparse.Namespace, config_dir: str) -> None:
    """``--cfg job --package <node>``: a node the config has (Hydra prints a line of its own
    for a missing one and exits 1, without dq-train's prefix). Composes the config, as
    ``--cfg`` would, only when a package is asked for."""
    if args.cfg is None or args.package in (None, "_global_"):
        return
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose("config", overrides=list(args.overrides), return_hydra_config=True)
    shown = {"job": [key for key in cfg if key != "hydra"], "hydra": ["hydra"]}.get(args.cfg, list(cfg))
    if str(args.package).split(".")[0] not in shown or OmegaConf.select(cfg, args.package) is None:
        raise DQUserError(
            f"--package {args.package!r} is no node of the config that --cfg {args.cfg} prints; "
            f"its top-level nodes: {', '.join(map(str, shown))}"
        )
