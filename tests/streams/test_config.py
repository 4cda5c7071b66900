from __future__ import annotations

import json
from pathlib import Path

import pytest

from processors.errors import ConfigurationError
from processors.upscale.config import UpscaleConfig
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
        # a password holding / ? # unencoded ends the host early for urlsplit: the "host" it
        # sees (admin:12) is part of the password, so the scheme alone is shown
        ("postgresql://admin:12/34@db:5432/x", "postgresql:***"),
        ("postgresql://admin:1#2@db/x", "postgresql:***"),
        ("postgresql://admin:5?x=1@db/x", "postgresql:***"),
        ("postgresql://admin:/hunter2@db/x", "postgresql:***"),
        ("https://ghp_tok/en@github.com/x", "https:***"),  # user info without a password
        ("https://hooks.example.com/cb?email=a@b.example", "https:***"),  # cannot tell: not shown
        ("postgresql://admin:hun@ter2@db/x", "postgresql://***@db/x"),
        ("postgresql://admin:100%@db/x", "postgresql://***@db/x"),
        ("postgresql://admin:a%2Fb%23c%3Fd%40e%25f@db/x", "postgresql://***@db/x"),
        ("https://hooks.example.com/cb?token=a/b?c%26d%3De#f", "https://hooks.example.com/cb?token=***"),
        ("https://hooks.example.com/cb?token=a%2Fb%40c&x=%25", "https://hooks.example.com/cb?token=***&x=***"),
        ("https://hooks.example.com/cb?dG9rZW4=&a=1", "https://hooks.example.com/cb?***&a=***"),  # base64 padding
    ],
)
def test_urls_are_shown_without_user_info_or_query_values(url: str, shown: str) -> None:
    assert mask_url(url) == shown


_PIECES = ("Qz7", "Wk4", "Vx9")
"""A password's parts, joined by one of ``_SEPARATORS``: none may appear in what is shown."""
_SEPARATORS = ("/", "#", "?", "@", "%", ":", "&", "=", "%2F", "%23", "%3F", "%40", "%25", "%3A")
_WHERE = (
    "postgresql://admin:{pw}@db:5432/x",
    "postgresql://{pw}@db/x",
    "postgresql://admin:{pw}@db/x?sslmode=require",
    "postgresql://db/x?password={pw}&sslmode=require",
    "https://hooks.example.com/cb?token={pw}",
    "https://hooks.example.com/cb?{pw}",
)


@pytest.mark.parametrize(
    ("template", "sep"),
    # a bare ?token with an = inside reads as key=value, whose key is shown
    [(t, sep) for t in _WHERE for sep in _SEPARATORS if not (t.endswith("?{pw}") and sep == "=")],
)
def test_no_part_of_a_password_is_shown_whatever_it_holds(template: str, sep: str) -> None:
    for digits in ("", "12"):  # a password starting with digits reads as a port
        shown = mask_url(template.format(pw=digits + sep.join(_PIECES)))
        assert not [p for p in (*_PIECES, "admin") if p in shown], shown


def test_structured_values_arrive_typed() -> None:
    s = load_settings(
        {
            "DARKROOM_ALLOWED_BUCKETS": "darkroom, photos",
            "DARKROOM_WEBHOOK_SCHEDULE": "0, 0.5,2",
            "DARKROOM_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1,::1/128",
            "DARKROOM_PROCESSES": "thumbnail=4,upscale=0",
            "DARKROOM_LOG_LEVEL": "WARNING",
            "DARKROOM_NOTIFICATION_RULES": '[{"bucket": "darkroom", "preset": "web"}]',
        }
    )
    assert s.allowed_buckets == ("darkroom", "photos") and s.buckets_allowed == {"darkroom", "photos"}
    assert s.webhook_schedule == (0.0, 0.5, 2.0)
    assert [str(n) for n in s.webhook_allow_networks] == ["127.0.0.1/32", "::1/128"]
    assert s.processes == {"thumbnail": 4, "upscale": 0}
    assert s.log_level == "warning"
    assert [(r.bucket, r.preset, r.pipeline) for r in s.notification_rules] == [("darkroom", "web", None)]


def test_ranges_and_choices_are_checked_and_every_problem_is_named_without_its_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(
            {
                "DARKROOM_PARTITIONS": "0",
                "DARKROOM_RETRY_BACKOFF_S": "-1",
                "DARKROOM_LOG_LEVEL": "verbose",
                "DARKROOM_METRICS_PORT": "70000",
                "DARKROOM_WEBHOOK_SCHEDULE": "0,-5",
                "DARKROOM_WEBHOOK_ALLOW_NETWORKS": "intranet",
                "DARKROOM_WEBHOOK_SECRETS": "whsec_dG9vc2hvcnQ=",
                "DARKROOM_PROCESSES": "sharpen=2",
                "DARKROOM_UPSCALE_DEVICE": "tpu",
            }
        )
    message = info.value.message
    for name in (
        "PARTITIONS",
        "RETRY_BACKOFF_S",
        "LOG_LEVEL",
        "METRICS_PORT",
        "WEBHOOK_SCHEDULE",
        "WEBHOOK_ALLOW_NETWORKS",
        "WEBHOOK_SECRETS",
        "PROCESSES",
        "UPSCALE_DEVICE",
    ):
        assert f"DARKROOM_{name}" in message, name
    assert "dG9vc2hvcnQ" not in message


def test_secrets_are_secret_strings_and_never_shown() -> None:
    secret = "whsec_" + "A" * 43
    s = Settings(database_url="postgresql://u:hunter2@db/x", s3_secret_key="very-secret", webhook_secrets=secret)
    assert s.database_url.get_secret_value() == "postgresql://u:hunter2@db/x"
    assert s.webhook_secrets[0].get_secret_value() == secret
    for text in (repr(s), str(s)):
        assert "hunter2" not in text and "very-secret" not in text and "A" * 43 not in text
    with pytest.raises(ConfigurationError) as info:
        load_settings({"DARKROOM_DATABASE_URL": "postgresql://u:hunter2@db/x", "DARKROOM_PARTITIONS": "x"})
    assert "hunter2" not in info.value.message


def test_replace_checks_what_it_changes() -> None:
    s = Settings()
    assert s.replace(partitions=3).partitions == 3 and s.partitions == 12
    with pytest.raises(ConfigurationError, match="DARKROOM_BATCH_SIZE"):
        s.replace(batch_size=0)
    with pytest.raises(ConfigurationError, match="darkroom-broker-log is darkroom's own"):
        s.replace(allowed_buckets="darkroom,darkroom-broker-log")


def test_structured_values_round_trip_through_the_environment() -> None:
    s = load_settings(
        {
            "DARKROOM_ALLOWED_BUCKETS": "darkroom,photos",
            "DARKROOM_WEBHOOK_SCHEDULE": "0,1.5",
            "DARKROOM_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/8",
            "DARKROOM_WEBHOOK_SECRETS": "whsec_" + "B" * 43,
            "DARKROOM_PROCESSES": "thumbnail=2",
            "DARKROOM_NOTIFICATION_RULES": json.dumps(
                [{"bucket": "darkroom", "pipeline": "web", "callback_url": "https://h.example/x?t=1"}]
            ),
        }
    )
    assert load_settings(s.to_env()) == s


def test_the_upscale_knobs_reach_the_upscaler() -> None:
    s = load_settings({"DARKROOM_UPSCALE_MEMORY_BUDGET_BYTES": str(512 * 2**20), "DARKROOM_UPSCALE_DEVICE": "cpu"})
    config = s.upscale()
    assert (config.memory_budget_bytes, config.device, config.model_dir) == (512 * 2**20, "cpu", s.home / "models")
    assert Settings().upscale() == UpscaleConfig(model_dir=Settings().home / "models")
