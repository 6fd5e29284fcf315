"""Every module's ``__all__`` is true: each name it lists exists (a stale name would break
``from module import *`` and mislead readers)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import toolkit

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(toolkit.__path__, prefix="toolkit.")
    if info.name != "toolkit.__main__"
)


def test_modules_are_found() -> None:
    assert {"toolkit.plan", "toolkit.ca.ledger", "toolkit.cli.app"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_only_what_exists(name: str) -> None:
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", [])
    assert len(listed) == len(set(listed)), "duplicates in __all__"
    missing = [n for n in listed if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which it does not define"
