"""The buckets and keys jobs may touch: the policy itself and how the settings build it."""

from __future__ import annotations

import pytest

from connectra.bucket_policy import BucketPolicy
from connectra.errors import BucketNotAllowedError, BucketNotConfiguredError, KeyNotAllowedError
from connectra.settings import ConfigError, load_settings

S3_VARIABLES = (
    "S3_BUCKET",
    "S3_ALLOWED_BUCKETS",
    "S3_ALLOWED_PREFIXES",
    "S3_UPLOAD_FILE_PATH_PRIFIX",
    "S3_UPLOAD_FILE_PATH_PREFIX",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in S3_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


def test_by_default_only_s3_bucket_is_allowed() -> None:
    policy = load_settings(S3_BUCKET="connectra-data").bucket_policy()
    policy.check("connectra-data", "hr/salaries.csv")
    with pytest.raises(BucketNotAllowedError) as refused:
        policy.check("privatebucket", "uploads/contacts.csv")
    assert refused.value.code == "ERR_BUCKET_NOT_ALLOWED"
    assert refused.value.http_status == 403


def test_with_no_bucket_configured_no_bucket_is_allowed() -> None:
    policy = load_settings().bucket_policy()
    assert not policy.allows("privatebucket", "a.csv")
    with pytest.raises(BucketNotConfiguredError):
        policy.bucket_for(None)


def test_listed_buckets_are_allowed_besides_the_default() -> None:
    settings = load_settings(S3_BUCKET="main-bucket", S3_ALLOWED_BUCKETS=" imports-a, imports-b ,")
    assert settings.s3_allowed_buckets == ("imports-a", "imports-b")
    policy = settings.bucket_policy()
    assert policy.bucket_for(None) == "main-bucket"
    assert policy.bucket_for("imports-b") == "imports-b"
    with pytest.raises(BucketNotAllowedError):
        policy.bucket_for("imports-c")


def test_keys_must_start_with_one_of_the_prefixes_when_they_are_set() -> None:
    policy = BucketPolicy.of("b", prefixes=["uploads/", "imports/"])
    policy.check_key("imports/2026/contacts.csv")
    for key in ("hr/salaries.csv", "uploads", "uploadsx/a.csv", "/uploads/a.csv"):
        with pytest.raises(KeyNotAllowedError) as refused:
            policy.check_key(key)
        assert refused.value.code == "ERR_KEY_NOT_ALLOWED"


@pytest.mark.parametrize(
    "key", ["uploads/../hr/salaries.csv", "../privatebucket/a.csv", "uploads/./a.csv", ".."]
)
def test_a_key_with_a_dot_segment_is_refused_even_without_prefixes(key: str) -> None:
    # A client normalising the URL would take such a key elsewhere, even to another bucket.
    for policy in (BucketPolicy.of("b"), BucketPolicy.of("b", prefixes=["uploads/"])):
        with pytest.raises(KeyNotAllowedError):
            policy.check("b", key)


def test_dots_inside_a_segment_are_ordinary_characters() -> None:
    BucketPolicy.of("b").check("b", "uploads/..contacts.csv.failed.csv")


def test_a_refusal_quotes_a_long_name_cut_short() -> None:
    with pytest.raises(BucketNotAllowedError) as refused:
        BucketPolicy.of("b").check_bucket("x" * 1000)
    assert len(refused.value.message) < 300


def test_settings_refuse_an_upload_prefix_outside_the_allowed_prefixes() -> None:
    # Upload URLs and export files go under it: every one would be refused.
    with pytest.raises(ConfigError, match="S3_UPLOAD_FILE_PATH_PRIFIX"):
        load_settings(S3_ALLOWED_PREFIXES="imports/", S3_UPLOAD_FILE_PATH_PRIFIX="uploads")
    settings = load_settings(S3_ALLOWED_PREFIXES="imports/,uploads/")
    assert settings.bucket_policy().prefixes == ("imports/", "uploads/")


@pytest.mark.parametrize("value", ["s3://bucket", "bucket/path", "*"])
def test_settings_refuse_what_is_not_a_bucket_name(value: str) -> None:
    with pytest.raises(ConfigError, match="S3_ALLOWED_BUCKETS"):
        load_settings(S3_ALLOWED_BUCKETS=value)
