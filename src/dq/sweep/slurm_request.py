"""Refusing, before sbatch, a SLURM sweep that asks for more GPUs per node than any node of
its partition has (``hydra.launcher.gpus_per_node=1`` on a CPU-only cluster).

sbatch refuses such a request itself (``Invalid generic resource (gres) specification``),
but submitit prints sbatch's error and then raises it, so the user got two lines, neither
saying what is allowed. dq asks ``sinfo`` first and stops with one line naming the request,
what the partition's nodes have and what to ask for instead. Where sinfo cannot answer,
nothing is checked and sbatch decides. (A request for more CPUs or memory than a node has
is not refused by sbatch, which queues it for ever: ``dq.sweep.slurm_watch`` cancels it.)
"""

from __future__ import annotations

import re
import subprocess

from omegaconf import DictConfig

from dq.sweep.slurm_watch import is_slurm

GPUS = re.compile(r"\bgpu(?::[^:(,]+)?:(\d+)")  # gpu:2, gpu:a100:4(S:0-1) in sinfo's %G


class RequestRefused(BaseException):
    """A SLURM request no node can meet; its text is the one line for the user.

    Not an ``Exception``: Hydra turns a callback's exceptions into warnings and goes on, so
    this passes through Hydra to ``dq.cli``, which prints it (exit 2)."""


def gpus_in(gres: str) -> int:
    """The GPUs in a node's generic resources as sinfo's ``%G`` shows them: ``(null)`` 0,
    ``gpu:2`` 2, ``gpu:a100:4(S:0-1),gpu:t4:1`` 5."""
    return sum(int(count) for count in GPUS.findall(gres))


def node_gpus(partition: str | None) -> dict[str, int] | None:
    """GPUs of each node of ``partition`` (None: the default one), from sinfo's generic
    resources; None when sinfo cannot answer."""
    command = ["sinfo", "--noheader", "--Node", "--format=%P|%N|%G"]
    try:
        output = subprocess.check_output(command, text=True, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    nodes = {}
    for line in output.splitlines():
        fields = line.strip().split("|", 2)
        if len(fields) != 3:
            continue
        listed, node, gres = fields  # listed: the partition, with "*" when it is the default
        if listed.rstrip("*") == partition if partition else listed.endswith("*"):
            nodes[node] = gpus_in(gres)
    return nodes or None


def check_gpus(config: DictConfig) -> None:
    """Raise ``RequestRefused`` when a SLURM sweep asks for more GPUs per node than every
    node of its partition has."""
    if not is_slurm(config):
        return
    launcher = config.hydra.launcher
    wanted, partition = launcher.get("gpus_per_node") or 0, launcher.get("partition")
    if not wanted:
        return
    nodes = node_gpus(partition)
    if nodes is None or wanted <= max(nodes.values()):
        return
    most = max(nodes.values())
    where = f"partition {partition}" if partition else "the default partition"
    allowed = "gpus_per_node=0 (CPU only)" if most == 0 else f"gpus_per_node up to {most}"
    raise RequestRefused(
        f"launcher=slurm asks for {wanted} GPU(s) per node (hydra.launcher.gpus_per_node={wanted}), "
        f"but the nodes of {where} have at most {most} in their generic resources (gres: sinfo -N -o '%N %G'); "
        f"allowed: hydra.launcher.{allowed}, or hydra.launcher.partition=<a partition with GPUs>"
    )
