"""Settings: defaults that work here, typed parsing, errors naming the variable."""

import os

import pytest

from sipdata.errors import ConfigError
from sipdata.settings import Settings


def test_defaults_point_at_local_services() -> None:
    """With no environment the settings point at the local PostgreSQL and Redis."""
    s = Settings.from_env({})
    assert s.database_url.startswith("postgresql://") and "127.0.0.1:5432" in s.database_url
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.keepalive_timeout_s > 118  # outlives libcurl's idle reuse


def test_values_are_parsed_by_type() -> None:
    """Each variable is parsed by its field's type."""
    s = Settings.from_env(
        {
            "SIPDATA_HTTP_PORT": "9000",
            "SIPDATA_WARMER_ENABLED": "off",
            "SIPDATA_WARM_INTERVAL_S": "2.5",
            "SIPDATA_REALM": "edge.example",
        }
    )
    assert (s.http_port, s.warmer_enabled, s.warm_interval_s, s.realm) == (
        9000,
        False,
        2.5,
        "edge.example",
    )


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SIPDATA_HTTP_PORT": "eighty"}, "SIPDATA_HTTP_PORT"),
        ({"SIPDATA_HTTP_PORT": "70000"}, "SIPDATA_HTTP_PORT"),
        ({"SIPDATA_WARMER_ENABLED": "maybe"}, "SIPDATA_WARMER_ENABLED"),
        ({"SIPDATA_DATABASE_URL": "mysql://x"}, "SIPDATA_DATABASE_URL"),
        ({"SIPDATA_REDIS_URL": "http://x"}, "SIPDATA_REDIS_URL"),
        ({"SIPDATA_LOG_FORMAT": "xml"}, "SIPDATA_LOG_FORMAT"),
        ({"SIPDATA_REALM": "a:b"}, "SIPDATA_REALM"),
        ({"SIPDATA_GENERATION_GRACE_S": "0"}, "SIPDATA_GENERATION_GRACE_S"),
        ({"SIPDATA_WORKERS": "-1"}, "SIPDATA_WORKERS"),
        ({"SIPDATA_MAX_INFLIGHT_DECISIONS": "0"}, "SIPDATA_MAX_INFLIGHT_DECISIONS"),
        # a superscript two is a digit to str.isdigit(), not to int()
        ({"SIPDATA_REDIS_SENTINELS": "127.0.0.1:\u00b2"}, "SIPDATA_REDIS_SENTINELS"),
        ({"SIPDATA_HTTP_PORT": "\u00b2"}, "SIPDATA_HTTP_PORT"),
    ],
)
def test_bad_value_stops_with_the_variable_named(env: dict[str, str], name: str) -> None:
    """A bad value stops start-up with the variable named."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert name in info.value.message


def test_workers_default_to_half_the_cores_and_at_least_one() -> None:
    """0 (the default) leaves room for Kamailio and Redis on an edge host; a number is
    taken as given."""
    expected = max(1, (os.cpu_count() or 2) // 2)
    assert Settings.from_env({}).serve_workers() == expected >= 1
    assert Settings.from_env({"SIPDATA_WORKERS": "3"}).serve_workers() == 3


def test_settings_are_frozen() -> None:
    """Settings cannot change after start-up."""
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.http_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "token", "allowed"),
    [
        ("127.0.0.1", "", True),
        ("127.0.0.2", "", True),
        ("::1", "", True),
        ("[::1]", "", True),
        ("localhost", "", True),
        ("0.0.0.0", "", False),
        ("::", "", False),
        ("", "", False),
        ("10.0.0.5", "", False),
        ("0.0.0.0", "s3cret", True),
        ("10.0.0.5", "s3cret", True),
    ],
)
def test_serving_beyond_loopback_needs_the_shared_secret(
    host: str, token: str, allowed: bool
) -> None:
    """HA1s go to whoever reaches /v1/credentials: only a loopback-only service may run
    without SIPDATA_API_TOKEN; otherwise the refusal names the setting."""
    settings = Settings(http_host=host, api_token=token)
    if allowed:
        settings.check_exposure()
    else:
        with pytest.raises(ConfigError) as caught:
            settings.check_exposure()
        assert caught.value.field == "SIPDATA_API_TOKEN"


def test_settings_survive_the_trip_through_a_child_environment() -> None:
    """to_env gives the environment from_env reads back as the same settings (the
    follower's full-load child process is configured this way)."""
    s = Settings(http_port=9001, warmer_enabled=False, change_poll_s=0.25, api_token="t0k")
    assert Settings.from_env(s.to_env()) == s
