"""Which environment variables Connectra Jobs reads: the settings' names, and any read of the
environment outside them (found in the source), for the tests that check docs and deployment
files against the code."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import connectra
from connectra.settings import Settings

ENV_READERS = {"getenv", "get", "pop", "setdefault"}  # os.getenv, os.environ.get, ...


@functools.cache
def setting_names() -> frozenset[str]:
    """Every environment name the settings read: each field's alias and alias choices."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if field.alias:
            names.add(field.alias)
        choices = getattr(field.validation_alias, "choices", None) or [field.validation_alias]
        names.update(choice for choice in choices if isinstance(choice, str))
    return frozenset(names)


def is_environ(node: ast.expr) -> bool:
    """`os.environ` or a bare `environ`."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def names_read(tree: ast.AST, where: str) -> set[str]:
    """The variables a module reads itself: `os.environ[...]`, `os.environ.get(...)`,
    `os.getenv(...)`, `envvar=` of a CLI option; a name that is not a literal shows as
    `<where:line>`, which no page can list."""
    found: set[str] = set()

    def literal(node: ast.expr | None, line: int) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.List | ast.Tuple):
            for item in node.elts:
                literal(item, line)
        else:
            found.add(f"<{where}:{line}>")

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_environ(node.value):
            literal(node.slice, node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            reader = node.func
            if reader.attr in ENV_READERS and (is_environ(reader.value) or reader.attr == "getenv"):
                literal(node.args[0] if node.args else None, node.lineno)
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "envvar":
                    literal(keyword.value, node.lineno)
    return found


def read_outside_settings(package: Path) -> set[str]:
    """The variables any module of `package` reads without going through `Settings`."""
    found: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        found |= names_read(ast.parse(path.read_text()), str(path.relative_to(package.parent)))
    return found


@functools.cache
def read_by_the_product() -> frozenset[str]:
    """Every environment variable Connectra Jobs reads (parsed once a run)."""
    return setting_names() | read_outside_settings(Path(connectra.__file__).parent)
