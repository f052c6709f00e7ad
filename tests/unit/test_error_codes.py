"""The error codes: each defined once, in `connectra/errors.py`, with who reports it and when;
the error-code reference (`docs/reference/errors.md`) lists exactly those, with their HTTP
statuses and whether they are transient; the OpenAPI document names only those."""

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

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "errors.md"
CODE = re.compile(r"`(ERR_[A-Z0-9_]+)`")
TRANSIENT = {"yes": True, "no": False}


def defined() -> dict[str, list[type[ConnectraError]]]:
    """Each code of `connectra/errors.py` -> the classes that carry it (subclasses inherit)."""
    carriers: dict[str, list[type[ConnectraError]]] = {}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, ConnectraError):
            carriers.setdefault(cls.code, []).append(cls)
    return carriers


def reference_rows() -> list[tuple[list[str], list[str]]]:
    """The rows of the tables of the error-code reference: (the codes of the first cell, the
    other cells: HTTP status, transient, message, when)."""
    rows = []
    for line in REFERENCE.read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
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


def test_each_code_says_who_reports_it_and_when() -> None:
    for carriers in defined().values():
        own = next(cls for cls in carriers if "code" in cls.__dict__)
        assert own.__dict__.get("reported_by"), own.__name__
        assert str(own.__dict__.get("when", "")).strip(), own.__name__


def test_the_reference_lists_exactly_the_defined_codes_once() -> None:
    listed = Counter(code for codes, _ in reference_rows() for code in codes)
    assert [code for code, n in listed.items() if n > 1] == []
    assert sorted(listed) == sorted(defined())


def test_the_reference_gives_each_codes_http_status_and_whether_it_is_transient() -> None:
    carriers = defined()
    for codes, cells in reference_rows():
        for code in codes:
            assert {c.http_status for c in carriers[code]} == {int(cells[0])}, code
            # "yes", "no", "yes; no when raised as ..." (the code's own class first), or when
            # it is transient, for a code whose transience depends on the case.
            first = cells[1].split(";")[0]
            own = next(c for c in carriers[code] if "code" in c.__dict__)
            if first in TRANSIENT:
                assert own.transient is TRANSIENT[first], code
            if cells[1] in TRANSIENT:
                assert {c.transient for c in carriers[code]} == {TRANSIENT[cells[1]]}, code


def test_the_openapi_document_names_only_defined_codes() -> None:
    document = build_document(default_registry(), load_settings(API_KEYS="k1"))
    named: set[str] = set()
    for operations in document["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                named |= set(response.get("x-error-codes", []))
    assert named
    assert named <= set(defined())
