"""The curated public surface of the trilha package."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import trilha


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it exists."""
    assert trilha.__all__ == sorted(trilha.__all__)
    for name in trilha.__all__:
        assert hasattr(trilha, name), name


def test_no_accidental_exports() -> None:
    """Public names of the package are exactly those in __all__, plus its submodules.

    Importing a submodule binds its name on the package, so which submodules show
    depends on what ran before (another test importing ``trilha.cli``). Every module of
    the package is imported first, and the submodules are found by walking it, not
    listed by hand: the answer is the same whatever ran before and whatever is added."""
    for found in pkgutil.walk_packages(trilha.__path__, prefix="trilha."):
        importlib.import_module(found.name)
    submodules = {found.name for found in pkgutil.iter_modules(trilha.__path__)}
    exported = set(trilha.__all__) - {"__version__"}
    public = {name for name in vars(trilha) if not name.startswith("_")}
    assert exported <= public
    unexplained = {
        name
        for name in public - exported
        if not (name in submodules and isinstance(getattr(trilha, name), ModuleType))
    }
    assert unexplained == set()
