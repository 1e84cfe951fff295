"""``dq-compress RUN_DIR compress=<choice> [compress.KEY=VALUE ...]``: compress a finished run.

Loads the run (``dq.rundir.load.load_run``: its config, best.pt, its split from the same seed),
composes the ``compress`` node from conf/compress/ and the overrides (Hydra's own checks:
unknown choice, unknown key, wrong type), checks it against the run's model, and writes
``RUN_DIR/compressed/<name>/`` (``dq.compress.step``). Only ``compress`` overrides are taken:
fine-tuning reuses the run's own seed, objective and optimizer, so the compressed model
differs from the original by the compression alone.

Refused with one line, exit 2, nothing written: a path that is not a completed run, a run
that is itself a compressed one, a missing or unknown ``compress`` choice, an amount outside
(0, 1), a model the method does not handle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, open_dict

from dq.compress.step import Source, check_compressible, compress_run
from dq.device import set_threads
from dq.errors import DQUserError
from dq.rundir.layout import COMPRESSION_JSON
from dq.rundir.load import load_run
from dq.spec import compose, compress_spec, to_spec

USAGE = "dq-compress RUN_DIR compress=prune|quantize [compress.KEY=VALUE ...]"


def compress_node(overrides: Sequence[str]) -> DictConfig:
    """The ``compress`` node that conf/compress/ and ``overrides`` give, validated.

    Raises:
        DQUserError: an override that is not about ``compress``, no ``compress=<choice>``,
            or a value its schema refuses (Hydra's own errors for unknown choices and keys).
    """
    for override in overrides:
        if not override.lstrip("+~").startswith(("compress=", "compress.")):
            raise DQUserError(
                f"dq-compress takes compress=<choice> and compress.KEY=VALUE, got {override!r}; usage: {USAGE}"
            )
    if not any(override.lstrip("+").startswith("compress=") for override in overrides):
        raise DQUserError(f"choose a method: compress=prune or compress=quantize; usage: {USAGE}")
    node = compose(list(overrides)).compress
    compress_spec(node)  # the amount's range and the like, before the run is loaded
    return node


def compress_directory(
    run_dir: str | Path, overrides: Sequence[str], say: Callable[[str], None] = lambda line: None
) -> tuple[Path, dict[str, float]]:
    """Compress the run in ``run_dir``; return the new directory and its ``compress/...`` keys."""
    run_dir = Path(run_dir)
    if (run_dir / COMPRESSION_JSON).exists():
        raise DQUserError(f"{run_dir} is a compressed run already; compress its original run instead")
    node = compress_node(overrides)
    run = load_run(run_dir)
    cfg = run.cfg.copy()
    with open_dict(cfg):
        cfg.compress = node
    spec = to_spec(cfg)
    check_compressible(spec.compress, str(spec.model.name), run.splits.meta, run.model)
    set_threads(spec.trainer.num_threads)
    device = next(run.model.parameters()).device
    source = Source(run_dir=run_dir, cfg=cfg, spec=spec, model=run.model, splits=run.splits, metrics=run.metrics)
    return compress_run(source, device, say)
