"""A script under scripts/ imported as a module, so its tests call its functions directly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(file_name: str) -> ModuleType:
    """``scripts/<file_name>`` as the module ``dq_script_<stem>``, loaded once. It is
    registered in ``sys.modules`` before it runs: its dataclasses look their module up."""
    name = f"dq_script_{Path(file_name).stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / file_name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
