"""pyproject.toml against the tree: every package directory is listed (tools/ as
conntrack_tools), every console script points at a function that exists, and the
description names only programs the tree has."""
from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _packages_in_tree() -> set[str]:
    out = set()
    for top, name in (("nfnl", "nfnl"), ("ctnetlink", "ctnetlink"), ("tools", "conntrack_tools")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            out.add(".".join((name, *rel)))
    return out


def test_every_package_is_listed() -> None:
    setuptools = PROJECT["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _packages_in_tree()
    assert setuptools["package-dir"] == {"conntrack_tools": "tools"}


def test_console_scripts_exist() -> None:
    for name, target in PROJECT["project"]["scripts"].items():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_description_names_only_existing_programs() -> None:
    description = PROJECT["project"]["description"]
    if "conntrackd" in description:
        assert (ROOT / "tools" / "conntrackd" / "__init__.py").exists()
        assert "conntrackd" in PROJECT["project"]["scripts"]
