"""The deployment files, read as a Docker engine would, since none runs here.

compose.yaml: every connectra service names only settings the product reads and runs a real
command of its CLI; every long-running service has a healthcheck and every dependency waits
on a condition; the stack has what both CSV jobs need. Dockerfile: a production image without
the embedded extra, not run as root, with a HEALTHCHECK. The image and `make` (so `.ci/run`)
install from the same lock, uv.lock, refusing one that no longer matches pyproject.toml.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from connectra.cli import app
from connectra.settings import ConfigError, load_settings
from tests.environment_names import read_by_the_product

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
LOCK = ROOT / "uv.lock"
IMAGE = "connectra:latest"
# Read by the image's CMD (`exec connectra $RUN_COMMAND`), not by the settings.
IMAGE_VARIABLES = {"RUN_COMMAND"}
# Compose's own variables, which .env may set for it.
COMPOSE_VARIABLES = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"}
ROLES = ("migrate", "api", "jobs first_time", "jobs retry", "run")
EMBEDDED = {"pgserver", "moto"}  # the embedded extra: embedded PostgreSQL, local S3
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


# -- what the product reads -----------------------------------------------------------------


def product_reads() -> frozenset[str]:
    """Every name a connectra container's environment may usefully hold."""
    return read_by_the_product() | IMAGE_VARIABLES


def cli_command(words: list[str]) -> Any:
    """The CLI command these words name, e.g. ['jobs', 'first_time']; fails if there is none.
    (Typer builds a click-style tree: a group has `commands`, by name.)"""
    command = typer.main.get_command(app)
    for word in words:
        subcommands = getattr(command, "commands", None)
        assert subcommands is not None, f"{command.name} takes no subcommand {word!r}"
        assert word in subcommands, f"the CLI has no command {' '.join(words)!r}"
        command = subcommands[word]
    assert not hasattr(command, "commands"), f"{' '.join(words)!r} needs a subcommand"
    return command


# -- compose.yaml, as Compose reads it (with no .env: every default) --------------------------


def interpolate(text: str) -> str:
    """Compose's interpolation with nothing set: defaults taken, `$$` a literal `$`."""
    resolved = INTERPOLATION.sub(lambda match: _default(match), text.replace("$$", "\0"))
    return resolved.replace("\0", "$")


def _default(match: re.Match[str]) -> str:
    """What `${...}` gives when its variable is unset."""
    return match["arg"] if match["op"] in {":-", "-"} else ""


@functools.cache
def compose() -> dict[str, Any]:
    """compose.yaml parsed, anchors and `<<` merges resolved, variables at their defaults;
    parsed once a run and shared, so never changed by a caller."""
    loaded: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text(encoding="utf-8")))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    """Every service, by name."""
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def connectra_services() -> dict[str, dict[str, Any]]:
    """The services that run the connectra image."""
    return {name: spec for name, spec in services().items() if spec.get("image") == IMAGE}


def environment(spec: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, as a mapping of strings (Compose allows a list too)."""
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def is_one_shot(spec: dict[str, Any]) -> bool:
    """A service that runs to its end (migrations, bucket creation) rather than serving."""
    return spec.get("restart") == "no"


def compose_variables() -> set[str]:
    """The variables compose.yaml interpolates."""
    return {match["name"] for match in INTERPOLATION.finditer(COMPOSE.read_text("utf-8"))}


def env_example_names() -> list[str]:
    """The names .env.example sets or shows (commented out)."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
    return pattern.findall(ENV_EXAMPLE.read_text(encoding="utf-8"))


def test_the_stack_runs_the_api_both_runners_and_the_migrations() -> None:
    roles = {environment(spec).get("RUN_COMMAND") for spec in connectra_services().values()}

    assert roles == {"migrate", "api", "jobs first_time", "jobs retry"}
    assert {"postgres", "minio", "minio-init", "elasticsearch"} <= services().keys()


@pytest.mark.parametrize("service", sorted(connectra_services()))
def test_connectra_services_name_only_settings_the_product_reads(service: str) -> None:
    unknown = environment(services()[service]).keys() - product_reads()

    assert not unknown, f"{service} sets {sorted(unknown)}, which connectra does not read"


@pytest.mark.parametrize("service", sorted(connectra_services()))
def test_connectra_services_run_a_command_of_the_cli(service: str) -> None:
    spec = services()[service]
    command = spec.get("command")
    words = command if isinstance(command, list) else str(command or "").split()
    if words[:1] == ["connectra"]:
        words = words[1:]
    elif not words:
        words = environment(spec)["RUN_COMMAND"].split()

    cli_command(words)


@pytest.mark.parametrize("service", sorted(connectra_services()))
def test_connectra_services_settings_are_valid(service: str) -> None:
    env = {name: value for name, value in environment(services()[service]).items() if value}
    env.pop("RUN_COMMAND", None)

    try:
        load_settings(**env)
    except ConfigError as exc:
        pytest.fail(f"{service}: {exc}")


def test_the_env_file_names_only_settings_or_variables_of_compose_yaml() -> None:
    known = product_reads() | compose_variables() | COMPOSE_VARIABLES
    unknown = set(env_example_names()) - known

    assert not unknown, f".env.example names {sorted(unknown)}, which nothing reads"


def test_every_variable_compose_yaml_takes_is_shown_in_the_env_file() -> None:
    missing = compose_variables() - set(env_example_names())

    assert not missing, f"compose.yaml reads {sorted(missing)}; show them in .env.example"


def test_connectra_services_take_the_env_file() -> None:
    for name, spec in connectra_services().items():
        paths = [entry["path"] if isinstance(entry, dict) else entry for entry in spec["env_file"]]
        assert paths == [".env"], name


@pytest.mark.parametrize("service", sorted(services()))
def test_long_running_services_have_a_healthcheck(service: str) -> None:
    spec = services()[service]
    check = spec.get("healthcheck") or {}
    if is_one_shot(spec):
        return

    assert check.get("test"), f"{service} has no healthcheck"
    assert not check.get("disable"), f"{service} has its healthcheck off"
    if spec.get("image") == IMAGE:
        assert check["test"] == ["CMD", "connectra", "healthcheck"]


def dependencies() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(service, the service it depends on, how) for every `depends_on` entry."""
    for name, spec in services().items():
        depends_on = spec.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on as a list waits on nothing"
        for target, how in depends_on.items():
            yield name, target, how


def test_every_dependency_waits_on_a_condition_its_target_can_meet() -> None:
    for name, target, how in dependencies():
        target_spec = services()[target]
        expected = (
            "service_completed_successfully" if is_one_shot(target_spec) else "service_healthy"
        )
        assert how.get("condition") == expected, f"{name} -> {target}"
        if target_spec.get("profiles"):  # optional: not there when its profile is off
            assert how.get("required") is False, f"{name} -> {target}"


def test_every_one_shot_is_awaited_by_a_long_running_service() -> None:
    """`docker compose up --wait` counts a one-shot that exited 0 as a failure unless a
    running service waits for it with `service_completed_successfully`."""
    awaited = {
        target
        for name, target, how in dependencies()
        if not is_one_shot(services()[name])
        and how.get("condition") == "service_completed_successfully"
    }
    one_shots = {name for name, spec in services().items() if is_one_shot(spec)}
    assert one_shots == {"migrate", "minio-init"}
    assert one_shots <= awaited


def test_connectra_services_wait_for_the_schema_and_the_bucket() -> None:
    for name, spec in connectra_services().items():
        after = spec["depends_on"].keys()
        expected = {"postgres"} if name == "migrate" else {"migrate", "minio-init"}
        assert expected <= after, name


def test_elasticsearch_is_optional() -> None:
    assert services()["elasticsearch"]["profiles"] == ["search"]
    for name, spec in connectra_services().items():
        assert not environment(spec).get("ELASTICSEARCH_URL"), name


def test_the_stack_has_what_both_csv_jobs_need() -> None:
    minio = environment(services()["minio"])
    init = services()["minio-init"]
    for name, spec in connectra_services().items():
        settings = load_settings(**{k: v for k, v in environment(spec).items() if v})
        assert settings.database_url, name
        assert settings.database_url.startswith("postgresql://connectra:"), name
        assert "@postgres:5432/connectra" in settings.database_url, name
        assert (settings.s3_endpoint_url, settings.s3_force_path_style) == (
            "http://minio:9000",
            True,
        ), name
        assert settings.aws_access_key_id is not None, name
        assert settings.aws_secret_access_key is not None, name
        assert settings.aws_access_key_id.get_secret_value() == minio["MINIO_ROOT_USER"], name
        secret = settings.aws_secret_access_key.get_secret_value()
        assert secret == minio["MINIO_ROOT_PASSWORD"], name
        assert settings.s3_bucket == environment(init)["BUCKET"], name
    assert "mc mb --ignore-existing" in " ".join(init["command"])


def test_the_api_listens_outside_its_container_and_signs_urls_for_callers() -> None:
    api = environment(services()["api"])

    assert api["API_HOST"] == "0.0.0.0"
    assert api["S3_PUBLIC_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert any(port.endswith(":8080:8080") for port in services()["api"]["ports"])
    assert any(port.endswith(":9000:9000") for port in services()["minio"]["ports"])


def test_runners_serve_health_outside_loopback() -> None:
    for name in ("jobs-first-time", "jobs-retry"):
        assert environment(services()[name])["METRICS_HOST"] == "0.0.0.0", name


def test_a_compose_typo_would_be_caught() -> None:
    """The check above is not vacuous: a name the product does not read is refused."""
    assert "FOO_BAR" not in product_reads()
    assert {"S3_BUCKET", "S3_UPLOAD_FILE_PATH_PREFIX", "AWS_DEFAULT_REGION"} <= product_reads()


# -- the Dockerfile and the lock ------------------------------------------------------------


def stages() -> list[list[str]]:
    """The Dockerfile's stages, each a list of instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    found: list[list[str]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def instructions(stage: list[str], keyword: str) -> list[str]:
    """The arguments of every instruction of this kind in the stage."""
    return [line.split(None, 1)[1] for line in stage if line.split(None, 1)[0].upper() == keyword]


def makefile_uv_version() -> str:
    """UV_VERSION in the Makefile."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", text, re.MULTILINE)
    assert found, "the Makefile pins no UV_VERSION"
    return found[1]


def test_the_image_runs_as_a_user_without_privileges() -> None:
    users = instructions(stages()[-1], "USER")

    assert users, "the final stage runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_the_image_has_a_healthcheck_and_lets_sigterm_reach_connectra() -> None:
    final = stages()[-1]

    assert any(
        "connectra" in check and "healthcheck" in check
        for check in instructions(final, "HEALTHCHECK")
    )
    assert json.loads(instructions(final, "CMD")[-1]) == ["sh", "-c", "exec connectra $RUN_COMMAND"]
    default = re.search(r'RUN_COMMAND="([^"]+)"', " ".join(instructions(final, "ENV")))
    assert default, "the image sets no default RUN_COMMAND"
    cli_command(default[1].split())


def test_the_image_installs_the_lock_without_extras() -> None:
    builder = " ".join(line for stage in stages()[:-1] for line in stage)
    syncs = [line for stage in stages() for line in instructions(stage, "RUN") if "uv sync" in line]

    assert "uv.lock" in builder
    assert syncs
    assert all("--locked" in sync for sync in syncs)
    assert not any(re.search(r"--extra|--all-extras|\[embedded\]", sync) for sync in syncs)
    assert not re.search(r"pip install[^\n]*(\.|connectra)", " ".join(stages()[-1]))
    assert f"ARG UV_VERSION={makefile_uv_version()}" in builder


def test_the_final_stage_copies_only_the_built_venv() -> None:
    copies = instructions(stages()[-1], "COPY")

    assert copies
    assert all(copy.startswith("--from=") for copy in copies)


def test_make_and_ci_install_from_the_same_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    assert stamp
    assert {"pyproject.toml", "uv.lock"} <= set(stamp[1].split())
    assert re.search(r"uv sync --locked\b", makefile)
    assert not re.search(r"pip install.* -e", makefile)
    assert re.search(r"^make (\.venv/\.installed|test)$", ci, re.MULTILINE)
    assert "pip install" not in ci


def locked_packages() -> dict[str, dict[str, Any]]:
    """uv.lock's packages by name."""
    lock = tomllib.loads(LOCK.read_text(encoding="utf-8"))
    return {package["name"]: package for package in lock["package"]}


def closure(packages: dict[str, dict[str, Any]], roots: list[dict[str, Any]]) -> set[str]:
    """Every package these dependencies pull in, with their extras' dependencies."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        dependency = todo.pop()
        name = dependency["name"]
        package = packages[name]
        extras = package.get("optional-dependencies", {})
        todo += [d for extra in dependency.get("extra", []) for d in extras.get(extra, [])]
        if name not in seen:
            seen.add(name)
            todo += package.get("dependencies", [])
    return seen


def test_the_locked_production_set_has_no_embedded_servers() -> None:
    packages = locked_packages()
    project = packages["connectra-jobs"]

    assert not closure(packages, project["dependencies"]) & EMBEDDED
    assert closure(packages, project["optional-dependencies"]["embedded"]) >= EMBEDDED


def test_the_lock_lists_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locked = {canonicalize_name(name) for name in locked_packages()}
    extras = project["optional-dependencies"].values()
    wanted = project["dependencies"] + [spec for extra in extras for spec in extra]

    missing = {canonicalize_name(Requirement(spec).name) for spec in wanted} - locked
    assert not missing, f"uv.lock lacks {sorted(missing)}: run `.venv/bin/uv lock`"


def test_the_build_context_holds_what_the_image_copies_and_no_secrets() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    copied = [
        source
        for stage in stages()
        for copy in instructions(stage, "COPY")
        if not copy.startswith("--from=")
        for source in copy.split()[:-1]
    ]

    assert "*" in ignore
    for source in copied:
        assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, source
    assert "!.env" not in ignore


# -- the image without the embedded extra -------------------------------------------------------

# Runs each role as in an image without pgserver or moto: no DATABASE_URL, S3 configured.
WITHOUT_EMBEDDED = """
import contextlib, io, json, sys
sys.modules["pgserver"] = sys.modules["pgserver.postgres_server"] = None
sys.modules["moto"] = sys.modules["moto.server"] = None
from connectra.cli import app
results = {}
for role in sys.argv[1:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            app(role.split(), prog_name="connectra")
        except SystemExit as exit:
            results[role] = [exit.code, err.getvalue()]
print(json.dumps(results))
"""


def test_roles_without_a_database_url_fail_in_one_line_in_the_production_image(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "S3_ENDPOINT_URL": "http://minio:9000",
        "S3_BUCKET": "connectra",
        "API_HOST": "0.0.0.0",
        "API_KEYS": "a-key",
    }
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EMBEDDED, *ROLES],
        cwd=tmp_path,  # no .env
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    for role, (code, stderr) in json.loads(done.stdout).items():
        assert code == 1, (role, stderr)
        assert stderr.startswith("ERR_EMBEDDED_DATABASE: "), (role, stderr)
        assert stderr.count("\n") == 1, (role, stderr)
        assert "DATABASE_URL" in stderr, (role, stderr)
