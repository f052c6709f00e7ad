"""The soak suite: real runner processes under random SIGKILLs (issue #4)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the `soak` marker here, so pyproject.toml needs no change."""
    config.addinivalue_line(
        "markers", "soak: long-running chaos test with real runner processes (issue #4)"
    )
