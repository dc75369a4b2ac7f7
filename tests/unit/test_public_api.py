"""The curated public surface of the trilha package."""

from __future__ import annotations

import trilha


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it exists."""
    assert trilha.__all__ == sorted(trilha.__all__)
    for name in trilha.__all__:
        assert hasattr(trilha, name), name


def test_no_accidental_exports() -> None:
    """Public names of the module are exactly those in __all__ (plus submodules)."""
    public = {n for n in vars(trilha) if not n.startswith("_")}
    submodules = {
        "config",
        "observability",
        "resilience",
        "core",
        "engine",
        "errors",
        "processors",
        "store",
        "channels",
        "netguard",
        "runtime",
        "flowfiles",
        "api",
        "views",
        "chaos",
        "outbox",
        "transcript",
    }
    assert public - submodules == set(trilha.__all__) - {"__version__"}
