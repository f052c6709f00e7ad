"""The `connectra` command line."""

from __future__ import annotations

# Each command imports what it runs inside its own body, not here: every invocation imports
# this module, and `connectra healthcheck` runs in each container every 30 s (every 2 s while
# it starts), where the runners, processors and drivers (asyncpg, aioboto3, elasticsearch,
# aiohttp) would cost over half a CPU-second a probe (bench/README.md, `bench_cli_start.py`).
# At the top: what typer reads from the commands' signatures, and light domain modules.
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import typer

from connectra._version import package_version
from connectra.api_keys import Scope
from connectra.errors import ConnectraError
from connectra.jobs import Job, JobStatus, job_to_json, parse_run_at

if TYPE_CHECKING:
    import asyncio

    import asyncpg

    from connectra.db.api_key_store import StoredKey
    from connectra.db.schedule_store import ScheduleStore, StoredSchedule
    from connectra.db.store import JobStore
    from connectra.processors.base import JobTypeRegistry
    from connectra.runners.daemon import Parts
    from connectra.schedules import Schedule
    from connectra.settings import Settings

    ScheduleAction = Callable[[ScheduleStore], Awaitable[StoredSchedule]]

log = logging.getLogger("connectra")

# `connectra run` is the local default: with no API_KEYS set it accepts this published key,
# but only when the API listens on a loopback address (elsewhere it needs a real key).
LOCAL_API_KEY = "local-dev-key"

app = typer.Typer(
    help="Connectra Jobs: a Postgres-backed runner for bulk CSV jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Run job runners and manage jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _print_version(value: bool) -> None:
    """`--version`: print the installed version and exit 0."""
    if value:
        typer.echo(package_version())
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Options of `connectra` itself, before any command."""


T = TypeVar("T")
StoreT = TypeVar("StoreT")
E = TypeVar("E", bound=BaseException)


def _fail(message: str, code: int) -> NoReturn:
    """Print one line to stderr and exit."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    """Load the settings; bad configuration is one line and exit code 2."""
    from connectra.logs import configure_logging
    from connectra.settings import ConfigError, load_settings

    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        _fail(str(exc), 2)
    configure_logging(settings.log_level)
    return settings


AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="Your job types: 'package.module:attribute', a connectra.JobTypeRegistry "
        "(default: CONNECTRA_APP).",
    ),
]
QueuesOption = Annotated[
    str | None,
    typer.Option(
        "--queues",
        help="Queues to serve, each with optional handler slots, e.g. 'reports=2,default=8' "
        "(default: QUEUES, else every queue).",
    ),
]


def _overrides(app: str | None = None, queues: str | None = None) -> dict[str, Any]:
    """Command-line options that win over the environment."""
    given = {"CONNECTRA_APP": app, "QUEUES": queues}
    return {name: value for name, value in given.items() if value is not None}


def _registry(settings: Settings) -> JobTypeRegistry:
    """The built-in job types, installed plugins and the user's `--app`; a bad `--app` is one
    line and exit code 2."""
    from connectra.processors.loader import load_registry
    from connectra.settings import ConfigError

    try:
        return load_registry(settings.app)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _database_url(settings: Settings) -> str:
    """`DATABASE_URL`, or the embedded server when none is set; one that cannot start (e.g.
    an image without the embedded extra) is one line and exit code 1."""
    from connectra.db.embedded import start_embedded

    if settings.database_url:
        return settings.database_url
    return _run_sync(lambda: start_embedded(settings.embedded_data_dir))


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on uvloop where it exists, turning product errors into one line and
    exit code 1. (uvloop: less CPU per job than asyncio's own loop, see bench/README.md.)"""
    import asyncio

    from connectra.settings import ConfigError

    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            return runner.run(main())
    except* ConnectraError as group:
        _fail(_first(group).render(), 1)
    except* ConfigError as group:
        _fail(str(_first(group)), 2)
    except* OSError as group:
        _fail(f"ERR_DATABASE_UNAVAILABLE: {_first(group)}", 1)


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop, or asyncio's default where uvloop is not installed (Windows)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _first(group: BaseExceptionGroup[E]) -> E:
    """The first leaf of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _daemon(parts: Parts, settings: Settings, registry: JobTypeRegistry | None = None) -> None:
    """Run the daemon with these parts until it is signalled to stop."""
    from connectra.runners.daemon import serve

    registry = registry or _registry(settings)
    url = _database_url(settings)
    _run(lambda: serve(settings, url, parts, registry=registry))


@app.command()
def migrate() -> None:
    """Apply the database migrations that are missing (safe to run concurrently)."""
    from connectra.db.migrate import migrate as apply_migrations
    from connectra.db.pool import create_pool

    settings = _settings()
    url = _database_url(settings)

    async def main() -> list[str]:
        pool = await create_pool(
            url, max_size=2, transaction_pooler=settings.database_transaction_pooler
        )
        try:
            async with pool.acquire() as conn:
                return await apply_migrations(conn)
        finally:
            await pool.close()

    applied = _run(main)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@app.command()
def api(app: AppOption = None) -> None:
    """Serve the HTTP API."""
    from connectra.runners.daemon import Parts

    settings = _settings(**_overrides(app))
    _daemon(Parts(api=True), settings)  # refused without API_KEYS unless a key is stored


@app.command()
def run(app: AppOption = None, queues: QueuesOption = None) -> None:
    """The local default: migrate, then run the API and both runners in one process."""
    from connectra.local_s3 import LOCAL_BUCKET, LOCAL_CREDENTIAL, local_s3
    from connectra.runners.daemon import Parts, serve

    overrides: dict[str, Any] = _overrides(app, queues)
    settings = _settings(**overrides)
    registry = _registry(settings)  # a bad --app stops us before anything starts
    if not settings.api_keys and settings.api_on_loopback:
        log.warning(
            "API_KEYS is not set: accepting the local development key %r on %s",
            LOCAL_API_KEY,
            settings.api_host,
            extra={"action": "local_api_key"},
        )
        overrides["API_KEYS"] = LOCAL_API_KEY
    parts = Parts(api=True, first_time=True, retry=True, migrate=True)
    if settings.s3_endpoint_url or settings.aws_access_key_id:
        _daemon(parts, _settings(**overrides), registry)
        return
    url = _database_url(settings)

    async def main() -> None:
        """The daemon beside the local S3 server, a child process: it stops when the daemon
        does, and the daemon stops if it exits."""
        bucket = settings.s3_bucket or LOCAL_BUCKET
        async with local_s3(settings.local_s3_port, bucket, settings.log_level) as s3:
            overrides.update(
                S3_ENDPOINT_URL=s3.endpoint_url,
                S3_BUCKET=s3.bucket,
                AWS_ACCESS_KEY_ID=LOCAL_CREDENTIAL,
                AWS_SECRET_ACCESS_KEY=LOCAL_CREDENTIAL,
            )
            await s3.beside(serve(_settings(**overrides), url, parts, registry=registry))

    _run(main)


@jobs_app.command("first_time")
def first_time(app: AppOption = None, queues: QueuesOption = None) -> None:
    """Run open jobs with PARALLEL_JOBS handler slots (or the slots of each of QUEUES)."""
    from connectra.runners.daemon import Parts

    _daemon(Parts(first_time=True), _settings(**_overrides(app, queues)))


@jobs_app.command("retry")
def retry(app: AppOption = None, queues: QueuesOption = None) -> None:
    """Retry failed jobs whose run_after has come, one at a time."""
    from connectra.runners.daemon import Parts

    _daemon(Parts(retry=True), _settings(**_overrides(app, queues)))


async def _with_store(settings: Settings, action: Callable[[JobStore], Awaitable[T]]) -> T:
    """Open a small pool, run one store action, close the pool."""
    from connectra.db.migrate import ensure_schema
    from connectra.db.pool import create_pool
    from connectra.db.store import JobStore

    pool = await create_pool(
        _database_url(settings),
        max_size=2,
        transaction_pooler=settings.database_transaction_pooler,
    )
    try:
        await ensure_schema(pool, apply=False)
        return await action(JobStore(pool))
    finally:
        await pool.close()


def _on_store(
    settings: Settings,
    open_store: Callable[[asyncpg.Pool], StoreT],
    action: Callable[[StoreT], Awaitable[T]],
) -> T:
    """Run one action of a store of the pool (ScheduleStore, ApiKeyStore) on a small pool."""
    return _run(lambda: _with_store(settings, lambda store: action(open_store(store.pool))))


def _print_json(value: Any) -> None:
    """Print JSON for people and for scripts."""
    typer.echo(json.dumps(value, indent=2))


TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout", min=0, help="Stop waiting after this many seconds (exit 124)."),
]


def _follow(
    settings: Settings, first: Callable[[JobStore], Awaitable[Job]], timeout: float | None
) -> NoReturn:
    """Get a job from `first`, show its progress until it ends, print it and exit: 0 when
    completed, 1 when failed_final or aborted, 124 on timeout, 130 on Ctrl-C."""
    from connectra.job_watch import ProgressLine, exit_code, follow, has_ended

    line = ProgressLine(sys.stderr)

    async def watch(store: JobStore) -> Job:
        """Follow the job `first` gives."""
        return await follow(store, (await first(store)).uuid, line, timeout)

    try:
        job = _run(lambda: _with_store(settings, watch))
    except KeyboardInterrupt:
        line.end()
        _fail(line.stopped(), 130)
    line.end()
    _print_json(job_to_json(job))
    if not has_ended(job):
        _fail(f"timed out after {timeout:g} s; job {job.uuid} is {job.status}", 124)
    raise typer.Exit(exit_code(job))


@jobs_app.command("create")
def create(
    job_type: Annotated[str, typer.Argument(help="The job type, e.g. noop or sleep.")],
    data: Annotated[str, typer.Option("--data", help="job_data as a JSON object.")] = "{}",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the job type's).")] = None,
    priority: Annotated[
        int | None, typer.Option(help="-100 to 100, higher runs first (default: the type's).")
    ] = None,
    run_at: Annotated[
        str | None, typer.Option("--run-at", help="Not before this ISO 8601 time.")
    ] = None,
    delay: Annotated[
        float | None, typer.Option("--delay", help="Not before this many seconds from now.")
    ] = None,
    retry_count: Annotated[int | None, typer.Option(min=0)] = None,
    retry_interval: Annotated[
        int | None, typer.Option(min=0, help="Seconds between retries.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show its progress until it ends; exit 0 if completed.")
    ] = False,
    timeout: TimeoutOption = None,
    app: AppOption = None,
) -> None:
    """Create a job, as POST /common/jobs/create does."""
    if timeout is not None and not wait:
        raise typer.BadParameter("--timeout needs --wait", param_hint="--timeout")
    settings = _settings(**_overrides(app))
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        _fail(f"ERR_INVALID_JOB_DATA: --data is not valid JSON: {exc}", 1)
    registry = _registry(settings)
    new = _run_sync(
        lambda: registry.new_job(
            job_type,
            raw,
            queue=queue,
            priority=priority,
            retry_count=retry_count,
            retry_interval=retry_interval,
            run_at=None if run_at is None else parse_run_at(run_at),
            delay_seconds=delay,
            settings=settings,
        )
    )
    if wait:
        _follow(settings, lambda store: store.create(new), timeout)
    job = _run(lambda: _with_store(settings, lambda store: store.create(new)))
    _print_json(job_to_json(job))


def _run_sync(action: Callable[[], T]) -> T:
    """Run a check, turning product errors into one line and exit code 1."""
    try:
        return action()
    except ConnectraError as exc:
        _fail(exc.render(), 1)


@jobs_app.command("list")
def list_jobs(
    status: Annotated[list[JobStatus] | None, typer.Option(help="Repeat for several.")] = None,
    job_type: Annotated[str | None, typer.Option("--type")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Repeat for several.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 25,
    after: Annotated[
        int | None,
        typer.Option(min=0, help="The next page: jobs older than the one with this id."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The jobs as JSON, for scripts.")] = False,
) -> None:
    """List jobs newest first, as POST /common/jobs does: a table, or JSON with --json."""
    settings = _settings()
    jobs = _run(
        lambda: _with_store(
            settings,
            lambda store: store.find(
                job_type=job_type, statuses=status, queues=queue, limit=limit, after=after
            ),
        )
    )
    if as_json:
        _print_json([job_to_json(job) for job in jobs])
        return
    _print_table(jobs, full_page=len(jobs) == limit)


def _print_table(jobs: list[Job], full_page: bool) -> None:
    """The jobs as a table; on stderr, how to get the next page when this one is full."""
    from connectra.job_table import render_table

    if not jobs:
        typer.echo("no jobs", err=True)
        return
    typer.echo(render_table(jobs, datetime.now(UTC)))
    if full_page:
        typer.echo(f"more jobs may follow: add --after {jobs[-1].id}", err=True)


@jobs_app.command("show")
def show(uuid: Annotated[UUID, typer.Argument(help="The job's uuid.")]) -> None:
    """Show one job."""
    settings = _settings()
    job = _run(lambda: _with_store(settings, lambda store: store.get(uuid)))
    _print_json(job_to_json(job))


@jobs_app.command("cancel")
def cancel(uuid: Annotated[UUID, typer.Argument(help="The job's uuid.")]) -> None:
    """Cancel a job: waiting jobs are aborted at once, running ones stop shortly."""
    settings = _settings()
    job = _run(lambda: _with_store(settings, lambda store: store.cancel(uuid)))
    _print_json(job_to_json(job))


@jobs_app.command("watch")
def watch(
    uuid: Annotated[UUID, typer.Argument(help="The job's uuid.")],
    timeout: TimeoutOption = None,
) -> None:
    """Show a job's progress until it ends; exit 0 if it completed, 1 if it failed or was
    aborted. Ctrl-C stops watching, not the job."""
    settings = _settings()
    _follow(settings, lambda store: store.get(uuid), timeout)


@jobs_app.command("requeue")
def requeue(uuid: Annotated[UUID, typer.Argument(help="The job's uuid.")]) -> None:
    """Reopen a failed or failed_final job as open, with a fresh attempt budget (a manual
    retry, as POST /common/jobs/{uuid}/retry)."""
    settings = _settings()
    job = _run(lambda: _with_store(settings, lambda store: store.reopen(uuid)))
    _print_json(job_to_json(job))


@jobs_app.command("retry-now", hidden=True)
def retry_now(uuid: Annotated[UUID, typer.Argument(help="The job's uuid.")]) -> None:
    """Deprecated name of `jobs requeue`."""
    typer.echo("warning: 'jobs retry-now' is deprecated; use 'jobs requeue'", err=True)
    requeue(uuid)


# -- cron schedules: `connectra schedules list|add|remove|pause|resume` ----------------------

schedules_app = typer.Typer(help="Manage cron schedules.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")

SCHEDULE_COLUMNS = (
    ("NAME", "name"),
    ("CRON", "cron"),
    ("TIMEZONE", "timezone"),
    ("JOB TYPE", "job_type"),
    ("QUEUE", "queue"),
    ("PAUSED", "paused"),
    ("LAST TICK", "last_tick_at"),
    ("NEXT TICK", "next_tick_at"),
    ("SOURCE", "source"),
)


def _print_schedule(settings: Settings, action: ScheduleAction) -> None:
    """Run an action that gives one schedule; print it as JSON."""
    from connectra.db.schedule_store import ScheduleStore, schedule_to_json

    async def shown(schedules: ScheduleStore) -> dict[str, Any]:
        """The schedule as of the database's clock."""
        stored = await action(schedules)
        return schedule_to_json(stored, await schedules.now())

    _print_json(_on_store(settings, ScheduleStore, shown))


def _cell(value: object) -> str:
    """One cell of a table: `-` for none, `yes` or `no` for a flag."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(columns: tuple[tuple[str, str], ...], items: list[dict[str, Any]]) -> str:
    """Items as aligned columns, one per line, under a header."""
    rows = [[title for title, _ in columns]]
    rows += [[_cell(item[key]) for _, key in columns] for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


@schedules_app.command("list")
def list_schedules(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List schedules with their last and next tick (UTC; QUEUE '-' is the job type's)."""
    from connectra.db.schedule_store import ScheduleStore, schedule_to_json

    settings = _settings()

    async def listing(schedules: ScheduleStore) -> list[dict[str, Any]]:
        """Every schedule as of the database's clock."""
        now = await schedules.now()
        return [schedule_to_json(stored, now) for stored in await schedules.all()]

    shown = _on_store(settings, ScheduleStore, listing)
    if as_json:
        _print_json(shown)
    else:
        typer.echo(_table(SCHEDULE_COLUMNS, shown) if shown else "no schedules")


@schedules_app.command("add")
def add_schedule(
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    cron: Annotated[str, typer.Option("--cron", help="5 fields, e.g. '*/5 * * * *'.")],
    job_type: Annotated[str, typer.Option("--job-type", help="The job type to create.")],
    data: Annotated[str, typer.Option("--data", help="job_data as a JSON object.")] = "{}",
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone.")] = "UTC",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the job type's).")] = None,
    priority: Annotated[
        int | None, typer.Option(help="-100 to 100, higher runs first (default: the type's).")
    ] = None,
    app: AppOption = None,
) -> None:
    """Add a schedule, checked against the job types of --app, as POST /common/schedules."""
    from connectra.processors.base import tick_job
    from connectra.schedules import Schedule

    settings = _settings(**_overrides(app))
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        _fail(f"ERR_INVALID_JOB_DATA: --data is not valid JSON: {exc}", 1)
    if not isinstance(raw, dict):
        _fail("ERR_INVALID_JOB_DATA: --data must be a JSON object", 1)
    registry = _registry(settings)

    def checked() -> Schedule:
        """The schedule, refused unless its job type accepts its data."""
        schedule = Schedule(name, cron, job_type, raw, timezone, queue, priority)
        tick_job(registry, schedule, settings)
        return schedule

    schedule = _run_sync(checked)
    _print_schedule(settings, lambda schedules: schedules.add(schedule))


@schedules_app.command("remove")
def remove_schedule(name: Annotated[str, typer.Argument(help="The schedule's name.")]) -> None:
    """Delete a schedule (its jobs stay); one still declared in code returns at next start."""
    _print_schedule(_settings(), lambda schedules: schedules.remove(name))


@schedules_app.command("pause")
def pause_schedule(name: Annotated[str, typer.Argument(help="The schedule's name.")]) -> None:
    """Stop a schedule from firing until it is resumed (kept across restarts)."""
    _print_schedule(_settings(), lambda schedules: schedules.pause(name))


@schedules_app.command("resume")
def resume_schedule(name: Annotated[str, typer.Argument(help="The schedule's name.")]) -> None:
    """Fire a paused schedule again from its next tick on (missed ticks are not fired)."""
    _print_schedule(_settings(), lambda schedules: schedules.resume(name))


# -- end of cron schedules ---------------------------------------------------------------------


# -- API keys: `connectra keys create|list|rotate|revoke` -------------------------------------

keys_app = typer.Typer(
    help="Manage API keys: named, scoped, stored hashed; secrets are shown once.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

KEY_COLUMNS = (
    ("NAME", "name"),
    ("SCOPE", "scope"),
    ("PREFIX", "prefix"),
    ("CREATED", "created_at"),
    ("ROTATED", "rotated_at"),
    ("LAST USED", "last_used_at"),
    ("REVOKED", "revoked_at"),
)


def _print_secret(key: StoredKey, secret: str, what: str) -> None:
    """The secret alone on stdout (for scripts); what it is on stderr. Shown this once."""
    typer.echo(
        f"{what} key {key.name!r} (scope {key.scope}); its secret follows and is not shown "
        "again: store it now",
        err=True,
    )
    typer.echo(secret)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="The key's name, e.g. 'billing-service'.")],
    scope: Annotated[
        Scope,
        typer.Option(
            "--scope",
            case_sensitive=False,
            help="read: list and read jobs; write: also create, cancel, retry jobs and get "
            "upload URLs; admin: everything, every key's jobs, schedules.",
        ),
    ],
) -> None:
    """Create a key and print its secret, once."""
    from connectra.db.api_key_store import ApiKeyStore

    key, secret = _on_store(_settings(), ApiKeyStore, lambda keys: keys.create(name, scope))
    _print_secret(key, secret, "created")


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys, revoked ones too: name, scope, prefix, dates (never a secret)."""
    from connectra.db.api_key_store import ApiKeyStore, key_to_json

    shown = [key_to_json(key) for key in _on_store(_settings(), ApiKeyStore, ApiKeyStore.all)]
    if as_json:
        _print_json(shown)
    else:
        typer.echo(_table(KEY_COLUMNS, shown) if shown else "no keys")


@keys_app.command("rotate")
def rotate_key(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Give a key a new secret and print it, once; the old secret stops working within
    API_KEY_CACHE_SECONDS. The key keeps its name, scope and jobs."""
    from connectra.db.api_key_store import ApiKeyStore

    key, secret = _on_store(_settings(), ApiKeyStore, lambda keys: keys.rotate(name))
    _print_secret(key, secret, "rotated")


@keys_app.command("revoke")
def revoke_key(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key for good (within API_KEY_CACHE_SECONDS); its name stays taken."""
    from connectra.db.api_key_store import ApiKeyStore, key_to_json

    key = _on_store(_settings(), ApiKeyStore, lambda keys: keys.revoke(name))
    _print_json(key_to_json(key))


# -- end of API keys ---------------------------------------------------------------------------


@app.command()
def healthcheck(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="The /readyz to ask (default: the API's on API_PORT, else a runner "
            "process's on METRICS_PORT).",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds.")] = 5.0,
) -> None:
    """Exit 0 when the process answers ready (200), else 1 with one line saying why: for
    container HEALTHCHECKs."""
    from connectra.healthcheck import check

    verdict = check([url] if url is not None else _healthcheck_urls(), timeout)
    if not verdict.ready:
        _fail(f"not ready: {verdict.reason}", 1)
    typer.echo(verdict.reason)


def _healthcheck_urls() -> list[str]:
    """The `/readyz` URLs the settings name; bad configuration is one line and exit code 1."""
    from connectra.healthcheck import default_urls
    from connectra.settings import ConfigError, load_settings

    try:
        return default_urls(load_settings())
    except ConfigError as exc:
        _fail(str(exc), 1)


def main() -> None:
    """Entry point of the `connectra` script."""
    sys.exit(app())
