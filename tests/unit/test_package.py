"""The installed package: its version in one place, `connectra --version`, the public names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import connectra
from connectra import _version

ROOT = Path(__file__).resolve().parents[2]
CONNECTRA_SCRIPT = Path(sys.executable).with_name("connectra")


def declared_version() -> str:
    """The version pyproject.toml declares: the one source."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project.get("dynamic", [])
    return str(project["version"])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60
    )


def test_the_installed_metadata_has_the_version_pyproject_declares() -> None:
    # Fails on a stale install: run `pip install -e .` again after changing the version.
    assert metadata.version(_version.DIST_NAME) == declared_version()


@pytest.mark.parametrize(
    "command",
    [[str(CONNECTRA_SCRIPT)], [sys.executable, "-m", "connectra"]],
    ids=["script", "python -m"],
)
def test_connectra_version_prints_the_package_version_and_exits_0(command: list[str]) -> None:
    result = run(*command, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{metadata.version('connectra-jobs')}\n"
    assert result.stderr == ""


def test_dunder_version_is_the_package_version() -> None:
    assert connectra.__version__ == metadata.version("connectra-jobs")


def test_a_source_tree_that_is_not_installed_reads_its_pyproject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert _version.package_version() == declared_version()


@pytest.mark.parametrize(
    "text",
    ["", "not toml [", '[project]\nname = "someone-else"\nversion = "9.9"\n'],
    ids=["empty", "unreadable", "another project"],
)
def test_without_our_pyproject_the_version_is_unknown(tmp_path: Path, text: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    assert _version.source_tree_version(tmp_path / "pyproject.toml") == "0+unknown"


def test_without_a_pyproject_the_version_is_unknown(tmp_path: Path) -> None:
    assert _version.source_tree_version(tmp_path / "pyproject.toml") == "0+unknown"


def test_every_name_in_dunder_all_imports() -> None:
    namespace: dict[str, object] = {}
    exec("from connectra import *", namespace)
    missing = [name for name in connectra.__all__ if name not in namespace]
    assert missing == []
    for name in connectra.__all__:
        assert getattr(connectra, name).__name__ == name


def test_importing_connectra_and_its_version_loads_no_server_module() -> None:
    code = textwrap.dedent(
        """
        import sys
        import connectra
        connectra.__version__
        heavy = ("aiohttp", "asyncpg", "aioboto3", "elasticsearch", "pydantic", "typer")
        print(sorted(name for name in sys.modules if name.split(".")[0] in heavy))
        """
    )
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_the_package_is_marked_typed() -> None:
    assert (Path(connectra.__file__).parent / "py.typed").is_file()
