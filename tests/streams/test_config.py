from __future__ import annotations

from pathlib import Path

import pytest

from processors.errors import ConfigurationError
from streams.config import Settings, load_settings, mask_url


def test_values_are_read_from_prefixed_environment_variables() -> None:
    s = load_settings({"DARKROOM_PARTITIONS": "3", "DARKROOM_S3_SECURE": "yes", "DARKROOM_HOME": "/tmp/x"})
    assert (s.partitions, s.s3_secure, s.home) == (3, True, Path("/tmp/x"))
    assert s.embedded_kafka and s.embedded_s3


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings({"DARKROOM_PARTITIONS": "four", "DARKROOM_S3_SECURE": "maybe", "DARKROOM_TYPO": "1"})
    message = str(info.value)
    assert "DARKROOM_PARTITIONS" in message and "DARKROOM_S3_SECURE" in message and "DARKROOM_TYPO" in message


def test_secrets_are_not_in_the_repr() -> None:
    s = Settings(s3_secret_key="very-secret", s3_access_key="AKID")
    assert "very-secret" not in repr(s)


def test_to_env_round_trips() -> None:
    s = Settings(kafka_bootstrap="k:9092", s3_endpoint="s3:9000", s3_secure=True, partitions=7, home=Path("/h"))
    assert load_settings(s.to_env()) == s


def test_embedded_s3_without_a_stack_explains_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="darkroom stack up"):
        Settings(home=tmp_path).s3_credentials()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://admin:hunter2@db:5432/x", "postgresql://***@db:5432/x"),
        ("postgresql://db/x?password=hunter2&sslmode=require", "postgresql://db/x?password=***&sslmode=***"),
        ("https://hooks.example.com/cb?token=hunter2#hunter2", "https://hooks.example.com/cb?token=***"),
        ("http://hooks.example.com/cb?hunter2&a=1", "http://hooks.example.com/cb?***&a=***"),
        ("mysql://admin:hunter2/x", "mysql:***"),  # a "port" that is no number is likely a password
        ("mysql:admin:hunter2@db/x", "mysql:***"),
        ("admin hunter2", "***"),
        ("sqlite:///var/lib/darkroom/results.sqlite3", "sqlite:///var/lib/darkroom/results.sqlite3"),
    ],
)
def test_urls_are_shown_without_user_info_or_query_values(url: str, shown: str) -> None:
    assert mask_url(url) == shown
