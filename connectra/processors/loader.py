"""Loading a process's job types: the built-in ones, the user's `--app package.module:attribute`
(or `CONNECTRA_APP`), and installed plugins of the `connectra.jobs` entry-point group."""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import EntryPoint, entry_points

from connectra.processors.base import JobTypeRegistry
from connectra.processors.registry import default_registry
from connectra.settings import ConfigError

ENTRY_POINT_GROUP = "connectra.jobs"


class AppLoadError(ConfigError):
    """The user's job types could not be loaded; the message says what and where."""


def load_registry(app: str | None, *, plugins: bool = True) -> JobTypeRegistry:
    """Every job type and schedule this process knows: built-ins, plugins, then `app`."""
    registry = default_registry()
    if plugins:
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            _include(registry, _load_entry_point(entry_point), f"plugin {entry_point.name!r}")
    if app:
        _include(registry, _load_app(app), app)
    return registry


def _load_app(reference: str) -> JobTypeRegistry:
    """`package.module:attribute`, which must be a `JobTypeRegistry`."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise AppLoadError(
            f"invalid --app {reference!r}: expected 'package.module:attribute', "
            "e.g. 'myjobs.tasks:registry'"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the user's modules are here
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(
                f"invalid --app {reference!r}: no module named {exc.name!r}"
            ) from exc
        raise _import_failed(reference, exc) from exc
    except Exception as exc:
        raise _import_failed(reference, exc) from exc
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise AppLoadError(
            f"invalid --app {reference!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    return _registry_of(value, f"--app {reference!r}")


def _load_entry_point(entry_point: EntryPoint) -> JobTypeRegistry:
    """A plugin's registry."""
    where = f"plugin {entry_point.name!r} ({entry_point.value})"
    try:
        value = entry_point.load()
    except Exception as exc:
        raise AppLoadError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
    return _registry_of(value, where)


def _registry_of(value: object, where: str) -> JobTypeRegistry:
    """The loaded object, which must be a registry."""
    if not isinstance(value, JobTypeRegistry):
        raise AppLoadError(
            f"invalid {where}: expected a connectra.JobTypeRegistry, got {type(value).__name__}"
        )
    return value


def _include(registry: JobTypeRegistry, other: JobTypeRegistry, where: str) -> None:
    """Add a loaded registry; a name that is taken already is a load error."""
    try:
        registry.include(other)
    except Exception as exc:
        raise AppLoadError(f"{where}: {exc}") from exc


def _import_failed(reference: str, exc: BaseException) -> AppLoadError:
    """An error raised while importing the user's module."""
    return AppLoadError(
        f"invalid --app {reference!r}: importing it raised {type(exc).__name__}: {exc}"
    )
