"""dq.registry.Registry: plugins found by importing their package's modules, one line for
an unknown name, and a name registered twice is a bug caught at import."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dq.errors import DQUserError
from dq.registry import Registry


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real package on sys.path: a registry module (underscore: not a plugin) and two
    plugin modules that register into it when imported."""
    package = tmp_path / "toyplugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_registry.py").write_text(
        "from dq.registry import Registry\nTOYS = Registry('toy', package='toyplugins')\n"
    )
    for name, size in (("small", 1), ("large", 9)):
        (package / f"{name}.py").write_text(
            "from dataclasses import dataclass\n"
            "from toyplugins._registry import TOYS\n"
            "@dataclass\nclass Config:\n    size: int = " + str(size) + "\n"
            f"@TOYS.register('{name}', schema=Config, kind='toy')\n"
            f"def build(cfg):\n    return '{name}', cfg.size\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "toyplugins"
    for module in [m for m in sys.modules if m.startswith("toyplugins")]:
        del sys.modules[module]


def test_plugins_are_found_by_importing_their_package(plugin_package: str) -> None:
    from toyplugins._registry import TOYS

    assert "toyplugins.small" not in sys.modules  # nothing is imported before the first lookup
    entry = TOYS.get("large")
    assert {"toyplugins.small", "toyplugins.large"} <= set(sys.modules)
    assert TOYS.names() == ["large", "small"]
    assert entry.value(entry.schema()) == ("large", 9) and entry.info == {"kind": "toy"}
    assert "small" in TOYS and TOYS.find("medium") is None


def test_an_unknown_name_is_one_line_listing_the_allowed_ones(plugin_package: str) -> None:
    from toyplugins._registry import TOYS

    with pytest.raises(DQUserError, match=r"^unknown toy 'medium'; allowed: large, small$"):
        TOYS.get("medium")


def test_a_name_registered_twice_is_refused() -> None:
    registry: Registry[int] = Registry("thing")
    registry.add("one", 1)
    with pytest.raises(ValueError, match="thing 'one' is registered twice"):
        registry.add("one", 2)
    assert registry.get("one").value == 1
