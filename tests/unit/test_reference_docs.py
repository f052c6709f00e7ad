"""The references in `docs/reference/` are what `scripts/gen_reference.py` makes of the code
today, and they cover what the product reads. (That the error-code page lists every code with
its HTTP status is checked with the codes themselves, in `test_error_codes.py`.)"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from connectra.settings import Settings
from tests.environment_names import read_by_the_product, read_outside_settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "reference" / "configuration.md"


def generator() -> ModuleType:
    """`scripts/gen_reference.py`, imported from its file (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "scripts" / "gen_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = generator()


def documented(page: str) -> set[str]:
    """The variables the first column of the configuration tables names."""
    rows = (line for line in page.splitlines() if line.startswith("| `"))
    return {
        name
        for row in rows
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", re.split(r"(?<!\\)\|", row)[1])
    }


PAGES: list[tuple[Path, Callable[[], str]]] = list(GENERATOR.PAGES.items())


@pytest.mark.parametrize(("path", "page"), PAGES, ids=[path.name for path, _ in PAGES])
def test_the_committed_page_is_what_the_generator_makes_of_the_code(
    path: Path, page: Callable[[], str]
) -> None:
    committed = path.read_text() if path.exists() else ""
    assert committed == page(), (
        f"{path.relative_to(ROOT)} differs from the code: run `python scripts/gen_reference.py`"
    )


def test_every_setting_has_a_description_and_a_section() -> None:
    undescribed = [
        name
        for name, field in Settings.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert undescribed == []
    for field in Settings.model_fields.values():
        assert GENERATOR.extra(field)["section"] in GENERATOR.SECTIONS


def test_the_configuration_reference_lists_every_variable_the_product_reads_and_no_other() -> None:
    read = read_by_the_product()
    listed = documented(CONFIGURATION.read_text())
    assert sorted(read - listed) == [], "read by the product, missing from configuration.md"
    assert sorted(listed - read) == [], "in configuration.md, read by nothing"


def test_reads_of_the_environment_outside_settings_are_found(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text(
        "import os\n"
        "a = os.environ['ONE']\n"
        "b = os.environ.get('TWO', '')\n"
        "c = os.getenv('THREE')\n"
        "d = typer.Option(None, envvar=['FOUR', 'FIVE'])\n"
        "e = os.getenv(name)\n"
    )
    found = read_outside_settings(tmp_path)
    assert found == {"ONE", "TWO", "THREE", "FOUR", "FIVE", f"<{tmp_path.name}/module.py:6>"}
