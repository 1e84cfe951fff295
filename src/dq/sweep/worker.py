"""One sweep job in a process of its own: ``python -P -m dq.sweep.worker JOB PAYLOAD RESULT PARENT``,
started by ``dq.sweep.processes`` (``launcher=joblib``).

The process first arranges to die with its parent (a SIGKILLed ``dq-train -m`` leaves no
job training on), then loads the job Hydra handed to the launcher (PAYLOAD, pickled by
cloudpickle), runs it as Hydra's joblib launcher would (``execute_job``) and leaves Hydra's
``JobReturn`` in RESULT for the parent. ``-P`` keeps the directory the sweep started in off
``sys.path``: a user's ``inspect.py`` there is never imported in place of the standard one.
Nothing heavy is imported before the job itself needs it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal this process gets when its parent thread ends


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, and leave at once when the
    parent is already gone (it died before the request was in place). Elsewhere than
    Linux this only checks the parent once."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def execute_job(idx: int, overrides: list[str], context: Any, config: Any, task: Any, singleton: Any) -> Any:
    """Hydra's job run for job number ``idx``: the sweep config of its overrides, then
    ``hydra.core.utils.run_job`` in ``<hydra.sweep.dir>/<hydra.sweep.subdir>`` (as
    hydra_joblib_launcher's ``execute_job`` does in its worker)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    setup_globals()
    Singleton.set_state(singleton)
    sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=context,
        config=sweep_config,
        task_function=task,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def main(argv: list[str]) -> None:
    _job, payload, result, parent = argv
    die_with_parent(int(parent))
    import cloudpickle

    job = cloudpickle.loads(Path(payload).read_bytes())
    Path(payload).unlink()  # read once: a parent SIGKILLed later leaves no copy of the config behind
    returned = execute_job(*job)
    partial = Path(result + ".partial")
    partial.write_bytes(cloudpickle.dumps(returned))
    os.replace(partial, result)  # the parent reads RESULT only once it is whole


if __name__ == "__main__":
    main(sys.argv[1:])
