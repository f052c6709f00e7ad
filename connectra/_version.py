"""The package's version. Its one source is `version` in pyproject.toml, which installing
writes into the distribution's metadata; a source tree that is not installed reads the file."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DIST_NAME = "connectra-jobs"
UNKNOWN_VERSION = "0+unknown"
SOURCE_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def package_version() -> str:
    """The installed distribution's version, else the source tree's pyproject.toml's."""
    try:
        return metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        return source_tree_version(SOURCE_PYPROJECT)


def source_tree_version(pyproject: Path) -> str:
    """`project.version` of this project's pyproject.toml, or `0+unknown` without one."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return UNKNOWN_VERSION
    if project.get("name") != DIST_NAME:  # a pyproject.toml that is not ours
        return UNKNOWN_VERSION
    return str(project.get("version", UNKNOWN_VERSION))
