"""Loading the user's job types with `--app package.module:attribute` and plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connectra.processors.loader import AppLoadError, load_registry

GOOD = """
from pydantic import BaseModel
from connectra import JobContext, JobTypeRegistry

registry = JobTypeRegistry()

class Data(BaseModel):
    n: int

@registry.job(queue="mine")
async def double(ctx: JobContext, data: Data) -> dict[str, int]:
    return {"result": data.n * 2}

not_a_registry = 42
"""


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path holding the user's modules, forgotten after the test."""
    (tmp_path / "userjobs_good.py").write_text(GOOD)
    (tmp_path / "userjobs_broken.py").write_text("import no_such_dependency_here\n")
    (tmp_path / "userjobs_raises.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "userjobs_clash.py").write_text(
        GOOD.replace("async def double", "async def noop").replace('queue="mine"', "")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in list(sys.modules):
        if name.startswith("userjobs_"):
            monkeypatch.delitem(sys.modules, name)
    return tmp_path


def test_user_job_types_join_the_built_in_ones(user_modules: Path) -> None:
    registry = load_registry("userjobs_good:registry", plugins=False)
    assert {"double", "insert_csv_file", "export_csv_file", "noop", "sleep"} <= set(registry.names)
    assert registry.get("double").queue == "mine"
    assert registry.validate("double", {"n": "3"}) == {"n": 3}


def test_no_app_means_the_built_in_types() -> None:
    assert load_registry(None, plugins=False).names == [
        "export_csv_file",
        "insert_csv_file",
        "noop",
        "sleep",
    ]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("userjobs_good", "expected 'package.module:attribute'"),
        ("userjobs_missing:registry", "no module named 'userjobs_missing'"),
        ("userjobs_good:nothing", "has no attribute 'nothing'"),
        ("userjobs_good:not_a_registry", "expected a connectra.JobTypeRegistry, got int"),
        ("userjobs_broken:registry", "ModuleNotFoundError: No module named 'no_such_dependency"),
        ("userjobs_raises:registry", "RuntimeError: boom at import"),
        ("userjobs_clash:registry", "'noop' is already registered"),
    ],
)
def test_a_bad_app_is_one_clear_error(user_modules: Path, reference: str, message: str) -> None:
    with pytest.raises(AppLoadError, match=message.replace("(", r"\(")):
        load_registry(reference, plugins=False)


@pytest.mark.parametrize("command", [["jobs", "first_time"], ["jobs", "retry"], ["api"], ["run"]])
def test_the_daemon_commands_stop_on_a_bad_app_with_one_line_and_code_2(
    user_modules: Path, command: list[str]
) -> None:
    env = {"PATH": "/usr/bin:/bin", "API_KEYS": "k", "DATABASE_URL": "postgresql://unused/x"}
    result = subprocess.run(
        [sys.executable, "-m", "connectra", *command, "--app", "userjobs_raises:registry"],
        cwd=user_modules,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "invalid --app 'userjobs_raises:registry': importing it raised RuntimeError: boom at import"
    ]


def test_connectra_app_in_the_environment_is_read_too(user_modules: Path) -> None:
    code = textwrap.dedent(
        """
        from connectra.cli import _registry, _settings
        print(sorted(_registry(_settings()).names))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=user_modules,
        env={"PATH": "/usr/bin:/bin", "CONNECTRA_APP": "userjobs_good:registry"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "'double'" in result.stdout


def test_installed_plugins_of_the_entry_point_group_are_loaded(user_modules: Path) -> None:
    dist = user_modules / "userjobs_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: userjobs-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[connectra.jobs]\nmine = userjobs_good:registry\n")
    assert "double" in load_registry(None).names
    (dist / "entry_points.txt").write_text(
        "[connectra.jobs]\nmine = userjobs_good:not_a_registry\n"
    )
    with pytest.raises(AppLoadError, match="plugin 'mine'"):
        load_registry(None)
