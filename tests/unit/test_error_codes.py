"""The error codes: each defined once, in `connectra/errors.py`; README "Error codes" lists
exactly those, with their HTTP statuses and whether they are retried; the OpenAPI document
names only those."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections import Counter
from pathlib import Path
from typing import Any

import connectra
from connectra import errors
from connectra.api.openapi import build_document
from connectra.errors import ConnectraError
from connectra.processors.registry import default_registry
from connectra.settings import load_settings

README = Path(__file__).resolve().parents[2] / "README.md"
CODE = re.compile(r"`(ERR_[A-Z0-9_]+)`")
RETRIED = {"yes": True, "no": False}


def defined() -> dict[str, list[type[ConnectraError]]]:
    """Each code of `connectra/errors.py` -> the classes that carry it (subclasses inherit)."""
    carriers: dict[str, list[type[ConnectraError]]] = {}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, ConnectraError):
            carriers.setdefault(cls.code, []).append(cls)
    return carriers


def readme_rows() -> list[tuple[list[str], list[str]]]:
    """The rows of the tables of README "Error codes": (the codes of the first cell, the
    other cells)."""
    text = README.read_text()
    section = text[text.index("\n### Error codes\n") : text.index("\n## Dashboard\n")]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        codes = CODE.findall(cells[0])
        if line.startswith("|") and codes:
            rows.append((codes, cells[1:]))
    return rows


def all_subclasses(cls: type[Any]) -> set[type[Any]]:
    """Every subclass of `cls`, at any depth."""
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def test_every_error_class_of_the_product_is_in_errors_py() -> None:
    for module in pkgutil.walk_packages(connectra.__path__, "connectra."):
        if module.name != "connectra.__main__":
            importlib.import_module(module.name)
    elsewhere = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in all_subclasses(ConnectraError)
        if cls.__module__.startswith("connectra.") and cls.__module__ != "connectra.errors"
    }
    assert not elsewhere


def test_each_code_is_defined_by_one_class() -> None:
    own_codes = Counter(
        cls.__dict__["code"]
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if "code" in cls.__dict__
    )
    assert [code for code, n in own_codes.items() if n > 1] == []


def test_the_readme_lists_exactly_the_defined_codes_once() -> None:
    listed = Counter(code for codes, _ in readme_rows() for code in codes)
    assert [code for code, n in listed.items() if n > 1] == []
    assert sorted(listed) == sorted(defined())


def test_the_readme_gives_each_codes_http_status_and_whether_it_is_retried() -> None:
    carriers = defined()
    for codes, cells in readme_rows():
        for code in codes:
            if cells[0].isdigit():  # the API's table
                assert {c.http_status for c in carriers[code]} == {int(cells[0])}, code
            elif cells[0] in RETRIED:  # the jobs' table; other answers depend on the case
                assert {c.transient for c in carriers[code]} == {RETRIED[cells[0]]}, code


def test_the_openapi_document_names_only_defined_codes() -> None:
    document = build_document(default_registry(), load_settings(API_KEYS="k1"))
    named: set[str] = set()
    for operations in document["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                named |= set(response.get("x-error-codes", []))
    assert named
    assert named <= set(defined())
