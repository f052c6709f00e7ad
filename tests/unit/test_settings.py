"""Configuration: the seed's names and defaults, and one clear line when it is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectra.settings import ConfigError, load_settings

SEED_VARIABLES = (
    "PARALLEL_JOBS",
    "BATCH_SIZE_FOR_INSERTION",
    "TICKER_INTERVAL_MINUTES",
    "TICKER_INTERVAL_SECONDS",
    "JOB_IN_QUEUE_SIZE",
    "S3_BUCKET",
    "S3_UPLOAD_FILE_PATH_PRIFIX",
    "S3_UPLOAD_FILE_PATH_PREFIX",
    "DATABASE_URL",
    "API_KEYS",
    "DATABASE_POOL_SIZE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in SEED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


def test_defaults_are_the_seeds() -> None:
    settings = load_settings()
    assert settings.parallel_jobs == 4
    assert settings.batch_size_for_insertion == 500
    assert settings.ticker_interval == timedelta(minutes=5)
    assert settings.job_in_queue_size == 100
    assert settings.s3_upload_file_path_prefix == "uploads"
    assert settings.s3_bucket is None


def test_seed_variables_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLEL_JOBS", "8")
    monkeypatch.setenv("JOB_IN_QUEUE_SIZE", "200")
    monkeypatch.setenv("TICKER_INTERVAL_MINUTES", "2")
    monkeypatch.setenv("S3_UPLOAD_FILE_PATH_PRIFIX", "exports")
    settings = load_settings()
    assert (settings.parallel_jobs, settings.job_in_queue_size) == (8, 200)
    assert settings.ticker_interval == timedelta(minutes=2)
    assert settings.s3_upload_file_path_prefix == "exports"


def test_correctly_spelled_prefix_is_accepted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_UPLOAD_FILE_PATH_PREFIX", "exports")
    assert load_settings().s3_upload_file_path_prefix == "exports"


def test_sub_minute_ticker_interval_wins_over_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKER_INTERVAL_MINUTES", "5")
    monkeypatch.setenv("TICKER_INTERVAL_SECONDS", "0.5")
    assert load_settings().ticker_interval == timedelta(seconds=0.5)


def test_env_file_is_read(tmp_path: object) -> None:
    with open(".env", "w") as env_file:
        env_file.write("PARALLEL_JOBS=3\nAPI_KEYS=one, two\n")
    settings = load_settings()
    assert settings.parallel_jobs == 3


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLEL_JOBS", "many")
    with pytest.raises(ConfigError, match=r"^invalid configuration: PARALLEL_JOBS: "):
        load_settings()


def test_cross_field_rule_pool_must_fit_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLEL_JOBS", "8")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "5")
    with pytest.raises(ConfigError, match="DATABASE_POOL_SIZE must be at least the handler slots"):
        load_settings()


def test_runners_listen_on_the_direct_url_or_not_at_all_behind_a_transaction_pooler() -> None:
    pooler, direct = "postgresql://h:6432/db", "postgresql://h:5432/db"
    assert load_settings(DATABASE_URL=pooler).listen_url(pooler) == pooler
    on = load_settings(DATABASE_URL=pooler, DATABASE_TRANSACTION_POOLER="true")
    assert on.listen_url(pooler) is None
    both = load_settings(
        DATABASE_URL=pooler, DATABASE_TRANSACTION_POOLER="true", DATABASE_DIRECT_URL=direct
    )
    assert both.listen_url(pooler) == direct


def test_the_pooler_settings_need_a_database_url() -> None:
    with pytest.raises(ConfigError, match="set DATABASE_URL too"):
        load_settings(DATABASE_TRANSACTION_POOLER="true")
