"""Configuration: one settings object, read from the environment and `.env`.

The configuration reference, `docs/reference/configuration.md`, is generated from the fields
(their descriptions and `_reference` extras) by `scripts/gen_reference.py`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from connectra.bucket_policy import BucketPolicy
from connectra.jobs import QUEUE_NAME
from connectra.retry import RetryBackoff, RetryPolicy

# Lenient on purpose (older buckets may have capitals or '_'): it stops URLs and paths.
BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


class TimeLimits(BaseModel):
    """Per job type: past `soft` seconds a warning is logged; past `hard` the job is stopped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    soft: float | None = Field(default=None, gt=0)
    hard: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _soft_before_hard(self) -> Self:
        """A soft limit after the hard one would never be seen."""
        if self.soft is not None and self.hard is not None and self.soft > self.hard:
            raise ValueError("the soft time limit must not exceed the hard one")
        return self


class QueueSpec(BaseModel):
    """One queue a runner process serves, with its own handler slots or None (shared)."""

    model_config = ConfigDict(frozen=True)

    name: str
    concurrency: int | None = Field(default=None, ge=1, le=1000)


def parse_queues(value: str) -> tuple[QueueSpec, ...]:
    """`reports=2,default=8` or `reports,default`: queue names, each with optional slots."""
    specs: list[QueueSpec] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, _, slots = item.partition("=")
        name = name.strip()
        if not QUEUE_NAME.match(name):
            raise ValueError(f"invalid queue name {name[:40]!r}")
        if any(spec.name == name for spec in specs):
            raise ValueError(f"queue {name!r} is listed twice")
        if slots and not (slots.strip().isascii() and slots.strip().isdigit()):
            raise ValueError(f"the concurrency of queue {name!r} must be a positive integer")
        specs.append(QueueSpec(name=name, concurrency=int(slots) if slots else None))
    return tuple(specs)


def _reference(section: str, *, default: str | None = None, values: str | None = None) -> JsonDict:
    """How the configuration reference (`scripts/gen_reference.py`) shows a setting: its
    section, and its default and accepted values where the field's own do not say it."""
    shown: JsonDict = {"section": section}
    if default is not None:
        shown["default_text"] = default
    if values is not None:
        shown["values_text"] = values
    return shown


class Settings(BaseSettings):
    """Every knob of Connectra Jobs; the seed's variable names are kept as they are."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, env_ignore_empty=True
    )

    database_url: str | None = Field(
        default=None,
        alias="DATABASE_URL",
        description="PostgreSQL URL, e.g. `postgresql://user:pass@host:5432/db`",
        json_schema_extra=_reference("Database", default="unset: embedded PostgreSQL"),
    )
    database_transaction_pooler: bool = Field(
        default=False,
        alias="DATABASE_TRANSACTION_POOLER",
        description="`DATABASE_URL` goes through a pooler in transaction mode (PgBouncer "
        "`pool_mode = transaction`): statements are not prepared under a name (asyncpg's "
        "`statement_cache_size=0`), CSV imports create their staging table in each batch's "
        "transaction, and runners LISTEN on `DATABASE_DIRECT_URL` or not at all (see PgBouncer)",
        json_schema_extra=_reference("Database"),
    )
    database_direct_url: str | None = Field(
        default=None,
        alias="DATABASE_DIRECT_URL",
        description="PostgreSQL itself, not through the pooler, for the runners' LISTEN "
        "connection (instant pickup), which needs a session of its own; with "
        "`DATABASE_TRANSACTION_POOLER` and no `DATABASE_DIRECT_URL` runners do not LISTEN and "
        "new jobs wait for the next tick",
        json_schema_extra=_reference("Database", default="unset: `DATABASE_URL`"),
    )
    embedded_data_dir: Path = Field(
        default=Path(".connectra/pgdata"),
        alias="EMBEDDED_DATA_DIR",
        description="data folder of the embedded PostgreSQL, used when `DATABASE_URL` is unset",
        json_schema_extra=_reference("Local development"),
    )
    database_pool_size: int | None = Field(
        default=None,
        ge=2,
        le=1000,
        alias="DATABASE_POOL_SIZE",
        description="connections per process; at least slots + 2 (slots: `PARALLEL_JOBS`, or "
        "the sum over `QUEUES`; 1 in a process that runs only the retry runner)",
        json_schema_extra=_reference("Database", default="`2 \N{MULTIPLICATION SIGN} slots + 4`"),
    )

    app: str | None = Field(
        default=None,
        alias="CONNECTRA_APP",
        description="your job types (as `--app`, which wins over it)",
        json_schema_extra=_reference("Runners", values="`package.module:attribute`"),
    )
    queues: Annotated[tuple[QueueSpec, ...], NoDecode] = Field(
        default=(),
        alias="QUEUES",
        description="queues a runner process serves, each with optional handler slots: "
        "`reports=2,default=8` (see Queues and priorities); `--queues` wins over it",
        json_schema_extra=_reference(
            "Runners", default="unset: every queue", values="comma-separated `name[=slots]`"
        ),
    )

    parallel_jobs: int = Field(
        default=4,
        ge=1,
        le=1000,
        alias="PARALLEL_JOBS",
        description="handlers the first_time runner runs at once (with three consumers per "
        "handler slot: the others may be writing finished jobs' outcomes)",
        json_schema_extra=_reference("Runners"),
    )
    batch_size_for_insertion: int = Field(
        default=500,
        ge=1,
        le=100_000,
        alias="BATCH_SIZE_FOR_INSERTION",
        description="rows per batch in CSV imports",
        json_schema_extra=_reference("Imports"),
    )
    ticker_interval_minutes: float = Field(
        default=5,
        gt=0,
        alias="TICKER_INTERVAL_MINUTES",
        description="polling interval, in minutes",
        json_schema_extra=_reference("Runners"),
    )
    ticker_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        alias="TICKER_INTERVAL_SECONDS",
        description="sub-minute polling interval; wins over the minutes",
        json_schema_extra=_reference("Runners"),
    )
    job_in_queue_size: int = Field(
        default=100,
        ge=1,
        le=100_000,
        alias="JOB_IN_QUEUE_SIZE",
        description="capacity of each runner's in-memory queue (back-pressure)",
        json_schema_extra=_reference("Runners"),
    )
    shutdown_grace_seconds: float = Field(
        default=30,
        ge=0,
        alias="SHUTDOWN_GRACE_SECONDS",
        description="how long running jobs may finish after a stop signal",
        json_schema_extra=_reference("Runners"),
    )

    heartbeat_interval_seconds: float = Field(
        default=5,
        gt=0,
        le=3600,
        alias="HEARTBEAT_INTERVAL_SECONDS",
        description="how often runners refresh the heartbeat of their jobs",
        json_schema_extra=_reference("Leases and retention"),
    )
    lease_seconds: float = Field(
        default=60,
        gt=0,
        alias="LEASE_SECONDS",
        description="a held job without a heartbeat for this long is rescued; at least "
        "3 \N{MULTIPLICATION SIGN} `HEARTBEAT_INTERVAL_SECONDS`",
        json_schema_extra=_reference("Leases and retention"),
    )
    job_ttl_days: float = Field(
        default=7,
        gt=0,
        alias="JOB_TTL_DAYS",
        description="retention of finished jobs (see Retention)",
        json_schema_extra=_reference("Leases and retention"),
    )
    result_ttl_days: float = Field(
        default=7,
        gt=0,
        alias="RESULT_TTL_DAYS",
        description="retention of finished jobs' result files (an export's CSV, an import's "
        "failed-rows CSV)",
        json_schema_extra=_reference("Leases and retention"),
    )
    cleanup_interval_seconds: float = Field(
        default=600,
        gt=0,
        alias="CLEANUP_INTERVAL_SECONDS",
        description="how often retention runs",
        json_schema_extra=_reference("Leases and retention"),
    )
    # Multipart uploads under the export prefix left unfinished this long are aborted.
    multipart_upload_ttl_hours: float = Field(
        default=24,
        gt=0,
        alias="MULTIPART_UPLOAD_TTL_HOURS",
        description="unfinished multipart uploads under the export prefix older than this are "
        "aborted",
        json_schema_extra=_reference("Leases and retention"),
    )
    idempotency_key_ttl_hours: float = Field(
        default=24,
        gt=0,
        alias="IDEMPOTENCY_KEY_TTL_HOURS",
        description="how long an `Idempotency-Key` is remembered",
        json_schema_extra=_reference("Leases and retention"),
    )

    job_time_limits: dict[str, TimeLimits] = Field(
        default_factory=dict,
        alias="JOB_TIME_LIMITS",
        description="per job type soft/hard limits in seconds, e.g. "
        '`{"export_csv_file": {"soft": 3600, "hard": 7200}}`: past the soft one a warning is '
        "logged, past the hard one the attempt fails with `ERR_TIMEOUT` (see Time limits)",
        json_schema_extra=_reference(
            "Runners", values='JSON: job type → `{"soft": seconds, "hard": seconds}`'
        ),
    )

    retry_backoff: RetryBackoff = Field(
        default=RetryBackoff.FIXED,
        alias="RETRY_BACKOFF",
        description="delay before retry n: `fixed`, `retry_interval` every time; "
        "`exponential`, `retry_interval · 2^(n-1)` ±10 % (see Retries)",
        json_schema_extra=_reference("Retries"),
    )
    retry_max_delay_seconds: float = Field(
        default=3600,
        gt=0,
        alias="RETRY_MAX_DELAY_SECONDS",
        description="cap on any retry delay",
        json_schema_extra=_reference("Retries"),
    )

    s3_bucket: str | None = Field(
        default=None,
        alias="S3_BUCKET",
        description="default bucket of CSV jobs",
        json_schema_extra=_reference("S3"),
    )
    s3_upload_file_path_prefix: str = Field(
        default="uploads",
        validation_alias=AliasChoices("S3_UPLOAD_FILE_PATH_PRIFIX", "S3_UPLOAD_FILE_PATH_PREFIX"),
        description="key prefix of export files and upload URLs",
        json_schema_extra=_reference("S3"),
    )
    # Besides S3_BUCKET, the only buckets jobs may name; and, when set, the only key prefixes.
    s3_allowed_buckets: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        alias="S3_ALLOWED_BUCKETS",
        description="buckets jobs may name besides `S3_BUCKET` (see Security model)",
        json_schema_extra=_reference(
            "S3", default="unset: `S3_BUCKET` alone", values="comma-separated bucket names"
        ),
    )
    s3_allowed_prefixes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        alias="S3_ALLOWED_PREFIXES",
        description="key prefixes every key a job reads or writes must start with; must cover "
        "`S3_UPLOAD_FILE_PATH_PRIFIX`",
        json_schema_extra=_reference(
            "S3", default="unset: any key", values="comma-separated key prefixes"
        ),
    )

    s3_endpoint_url: str | None = Field(
        default=None,
        alias="S3_ENDPOINT_URL",
        description="an S3-compatible endpoint (MinIO, Ceph, ...); with no endpoint and no "
        "credentials `connectra run` starts a local in-memory one",
        json_schema_extra=_reference("S3", default="unset: AWS S3"),
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        alias="S3_PUBLIC_ENDPOINT_URL",
        description="the endpoint presigned upload and download URLs name, when their users "
        "reach S3 at another address than the daemon does (compose: `http://127.0.0.1:9000` "
        "for MinIO at `http://minio:9000`)",
        json_schema_extra=_reference("S3", default="unset: the daemon's endpoint"),
    )
    s3_force_path_style: bool = Field(
        default=False,
        alias="S3_FORCE_PATH_STYLE",
        description="path-style addressing, which most S3-compatible servers want",
        json_schema_extra=_reference("S3"),
    )
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="S3 region",
        json_schema_extra=_reference("S3"),
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None,
        alias="AWS_ACCESS_KEY_ID",
        description="S3 credentials: the access key id",
        json_schema_extra=_reference("S3", default="unset: the AWS default chain"),
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None,
        alias="AWS_SECRET_ACCESS_KEY",
        description="S3 credentials: the secret access key",
        json_schema_extra=_reference("S3", default="unset: the AWS default chain"),
    )
    local_s3_port: int = Field(
        default=9000,
        ge=0,
        le=65535,
        alias="LOCAL_S3_PORT",
        description="port of the local S3 that `connectra run` starts",
        json_schema_extra=_reference("Local development"),
    )
    presigned_url_expiry_seconds: int = Field(
        default=3600,
        ge=1,
        le=7 * 24 * 3600,
        alias="PRESIGNED_URL_EXPIRY_SECONDS",
        description="lifetime (and maximum `expires_in`) of presigned URLs",
        json_schema_extra=_reference("S3"),
    )

    elasticsearch_url: str | None = Field(
        default=None,
        alias="ELASTICSEARCH_URL",
        description="Elasticsearch for imports and exports",
        json_schema_extra=_reference("Elasticsearch", default="unset: PostgreSQL only"),
    )
    elasticsearch_plain_media_types: bool = Field(
        default=False,
        alias="ELASTICSEARCH_PLAIN_MEDIA_TYPES",
        description="send `application/json` instead of Elasticsearch's versioned media types "
        "(for OpenSearch-compatible servers)",
        json_schema_extra=_reference("Elasticsearch"),
    )
    elasticsearch_index_prefix: str = Field(
        default="",
        pattern=r"^[a-z0-9_-]*$",
        alias="ELASTICSEARCH_INDEX_PREFIX",
        description="prefix of the `contacts` / `companies` index names",
        json_schema_extra=_reference(
            "Elasticsearch", values="lowercase letters, digits, `_` and `-`"
        ),
    )

    import_max_reported_errors: int = Field(
        default=100,
        ge=0,
        le=10_000,
        alias="IMPORT_MAX_REPORTED_ERRORS",
        description="bad rows listed in an import's `runtime_errors` (all go to the failed-rows "
        "CSV)",
        json_schema_extra=_reference("Imports"),
    )

    api_host: str = Field(
        default="127.0.0.1",
        alias="API_HOST",
        description="address the API listens on",
        json_schema_extra=_reference("API"),
    )
    api_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        alias="API_PORT",
        description="port the API listens on",
        json_schema_extra=_reference("API"),
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        alias="API_KEYS",
        description="admin `X-API-Key` values, named `env-1`, `env-2`, ...; without them the API "
        "needs a managed key (see API keys and scopes), except that `connectra run` listening "
        "on loopback accepts a local development key",
        json_schema_extra=_reference("API", values="comma-separated keys"),
    )
    # How long the API trusts what it read of a managed key (a revoked key works this long).
    api_key_cache_seconds: float = Field(
        default=5,
        ge=0,
        le=60,
        alias="API_KEY_CACHE_SECONDS",
        description="how long an API process trusts what it read of a managed key: a revoked "
        "key is refused within this time",
        json_schema_extra=_reference("API"),
    )
    api_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        alias="API_MAX_BODY_BYTES",
        description="larger request bodies get 413",
        json_schema_extra=_reference("API"),
    )
    # Slow and abusive clients: a request's line and headers, then its body, must arrive within
    # these; an idle keep-alive connection is closed after its timeout; past the cap, the
    # oldest idle or half-sent connection is closed (the same on the metrics listener).
    api_header_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=3600,
        alias="API_HEADER_TIMEOUT_SECONDS",
        description="a request's line and headers must arrive within this (from the connection "
        "opening, or from a later request's first byte); else 408 and closed (see Slow "
        "clients and reverse proxies); on a runner process's metrics listener too",
        json_schema_extra=_reference("API"),
    )
    api_body_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        alias="API_BODY_TIMEOUT_SECONDS",
        description="a request's whole body must arrive within this of its headers; else 408; "
        "on a runner process's metrics listener too",
        json_schema_extra=_reference("API"),
    )
    api_keepalive_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        alias="API_KEEPALIVE_TIMEOUT_SECONDS",
        description="an idle keep-alive connection is closed after this; keep it above a "
        "reverse proxy's upstream idle timeout; on a runner process's metrics listener too",
        json_schema_extra=_reference("API"),
    )
    api_max_connections: int = Field(
        default=2048,
        ge=1,
        le=1_000_000,
        alias="API_MAX_CONNECTIONS",
        description="open connections at most; past it the oldest idle or half-sent one is "
        "closed (lowered to fit the open-file limit); on a runner process's metrics listener "
        "too",
        json_schema_extra=_reference("API"),
    )

    # Metrics and health: `/metrics` on the API, and on runner processes a listener of their
    # own (0: none). METRICS_ENABLED=false records nothing and serves no `/metrics`.
    metrics_enabled: bool = Field(
        default=True,
        alias="METRICS_ENABLED",
        description="record metrics and serve `/metrics` (see Metrics); `false` records nothing",
        json_schema_extra=_reference("Metrics and logs"),
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        alias="METRICS_HOST",
        description="where a process running only runners serves `/metrics`, `/healthz` and "
        "`/readyz` (the API serves them on its own port)",
        json_schema_extra=_reference("Metrics and logs"),
    )
    metrics_port: int = Field(
        default=9090,
        ge=0,
        le=65535,
        alias="METRICS_PORT",
        description="port of that listener; `0` turns it off",
        json_schema_extra=_reference("Metrics and logs"),
    )

    log_level: str = Field(
        default="INFO",
        alias="LOG_LEVEL",
        description="the least severe level logged; logs are JSON lines on stderr",
        json_schema_extra=_reference(
            "Metrics and logs",
            values="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`, in any case",
        ),
    )

    @field_validator("api_keys", "s3_allowed_buckets", "s3_allowed_prefixes", mode="before")
    @classmethod
    def _split_lists(cls, value: object, info: ValidationInfo) -> object:
        """Accept a comma-separated list of keys, bucket names or key prefixes; None is no
        bucket names or prefixes (API_KEYS still refuses it)."""
        if value is None and info.field_name != "api_keys":
            return ()
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("s3_allowed_buckets")
    @classmethod
    def _bucket_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Plain bucket names, not URLs or paths."""
        for name in value:
            if not BUCKET_NAME.fullmatch(name):
                raise ValueError(f"{name[:70]!r} is not a bucket name")
        return value

    @field_validator("queues", mode="before")
    @classmethod
    def _parse_queues(cls, value: object) -> object:
        """`reports=2,default=8`: queue names with optional handler slots each."""
        if isinstance(value, str):
            return parse_queues(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        """Only the standard logging levels."""
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _pool_fits_workers(self) -> Self:
        """Every consumer may hold a connection while the ticker and the API hold others."""
        least = self.total_concurrency + 2
        if self.database_pool_size is not None and self.database_pool_size < least:
            raise ValueError(
                "DATABASE_POOL_SIZE must be at least the handler slots (PARALLEL_JOBS, or the "
                f"sum of QUEUES' slots) + 2 ({least})"
            )
        return self

    @model_validator(mode="after")
    def _pooler_needs_database_url(self) -> Self:
        """The embedded server is never behind a pooler."""
        if self.database_url is None and (
            self.database_transaction_pooler or self.database_direct_url
        ):
            raise ValueError(
                "DATABASE_TRANSACTION_POOLER and DATABASE_DIRECT_URL describe DATABASE_URL: "
                "set DATABASE_URL too"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Self:
        """A lease must survive a few missed heartbeats, or live jobs get rescued."""
        if self.lease_seconds < 3 * self.heartbeat_interval_seconds:
            raise ValueError(
                "LEASE_SECONDS must be at least 3 x HEARTBEAT_INTERVAL_SECONDS "
                f"({3 * self.heartbeat_interval_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _uploads_within_allowed_prefixes(self) -> Self:
        """Upload URLs and export files go under S3_UPLOAD_FILE_PATH_PRIFIX: it must be allowed."""
        folder = self.s3_upload_file_path_prefix.strip("/") + "/"
        if self.s3_allowed_prefixes and not folder.startswith(self.s3_allowed_prefixes):
            raise ValueError(
                f"S3_UPLOAD_FILE_PATH_PRIFIX ({folder!r}) must lie under one of "
                "S3_ALLOWED_PREFIXES: upload URLs and export files are written there"
            )
        return self

    def first_time_groups(self) -> list[tuple[tuple[str, ...] | None, int]]:
        """The first_time runners of a process, as (queues or None for every queue, handler
        slots): one per queue with its own slots, and one sharing PARALLEL_JOBS for the
        queues listed without."""
        if not self.queues:
            return [(None, self.parallel_jobs)]
        groups: list[tuple[tuple[str, ...] | None, int]] = [
            ((spec.name,), spec.concurrency) for spec in self.queues if spec.concurrency
        ]
        shared = tuple(spec.name for spec in self.queues if spec.concurrency is None)
        if shared:
            groups.append((shared, self.parallel_jobs))
        return groups

    @property
    def queue_names(self) -> tuple[str, ...] | None:
        """The queues this process serves; None for every queue."""
        return tuple(spec.name for spec in self.queues) or None

    @property
    def total_concurrency(self) -> int:
        """Handler slots of all first_time runners of a process."""
        return sum(slots for _, slots in self.first_time_groups())

    @property
    def pool_size(self) -> int:
        """Connections per process: two per consumer (bulk jobs pipeline) plus housekeeping."""
        return self.pool_size_for(self.total_concurrency)

    def pool_size_for(self, slots: int) -> int:
        """The pool of a process with this many handler slots, unless DATABASE_POOL_SIZE says."""
        return self.database_pool_size or 2 * slots + 4

    def listen_url(self, database_url: str) -> str | None:
        """Where runners LISTEN: `DATABASE_DIRECT_URL`, else `database_url` (DATABASE_URL or
        the embedded server's) unless that is a transaction pooler, which drops LISTEN."""
        if self.database_direct_url:
            return self.database_direct_url
        return None if self.database_transaction_pooler else database_url

    @property
    def ticker_interval(self) -> timedelta:
        """The polling interval; TICKER_INTERVAL_SECONDS wins over the seed's minutes."""
        if self.ticker_interval_seconds is not None:
            return timedelta(seconds=self.ticker_interval_seconds)
        return timedelta(minutes=self.ticker_interval_minutes)

    @property
    def shutdown_grace(self) -> timedelta:
        """How long running jobs may finish after a stop signal."""
        return timedelta(seconds=self.shutdown_grace_seconds)

    @property
    def heartbeat_interval(self) -> timedelta:
        """How often a runner refreshes the heartbeat of the jobs it holds."""
        return timedelta(seconds=self.heartbeat_interval_seconds)

    @property
    def lease(self) -> timedelta:
        """How long a job may go without a heartbeat before another runner rescues it."""
        return timedelta(seconds=self.lease_seconds)

    @property
    def retry_max_delay(self) -> timedelta:
        """The cap on any computed retry delay."""
        return timedelta(seconds=self.retry_max_delay_seconds)

    def retry_policy(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        return RetryPolicy(backoff=self.retry_backoff, max_delay=self.retry_max_delay)

    def time_limits_for(self, job_type: str, default: TimeLimits) -> TimeLimits:
        """`JOB_TIME_LIMITS` for this job type, else the job type's own limits."""
        return self.job_time_limits.get(job_type, default)

    def bucket_policy(self) -> BucketPolicy:
        """The buckets and key prefixes jobs may touch."""
        return BucketPolicy.of(self.s3_bucket, self.s3_allowed_buckets, self.s3_allowed_prefixes)

    @property
    def api_on_loopback(self) -> bool:
        """Whether the API listens on this machine only (127.0.0.0/8, ::1 or localhost)."""
        host = self.api_host.strip().strip("[]").lower()
        if host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        return address.is_loopback or bool(mapped and mapped.is_loopback)


class ConfigError(Exception):
    """The configuration is invalid; the message names the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation error into one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """Say which variable is wrong and why, in one line."""
    first = exc.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    names = "/".join(str(part) for part in first["loc"])
    extra = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid configuration: {names + ': ' if names else ''}{message}{extra}"
