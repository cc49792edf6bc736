"""Settings: defaults, the shipped TOML file, precedence, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamproc.emulator.settings import load_settings
from streamproc.errors import ConfigError

CONFIG = Path(__file__).parents[3] / "config" / "emulator.toml"


def test_shipped_config_file_equals_the_built_in_defaults() -> None:
    """config/emulator.toml documents exactly the built-in defaults."""
    assert load_settings(CONFIG, environ=False) == load_settings(None, environ=False)


def test_defaults() -> None:
    """Default users, token lifetimes and the preallocated Fraud Score API Task."""
    settings = load_settings(None, environ=False)
    assert [u.username for u in settings.users] == ["cr-admin", "bot-developer"]
    assert all(len(u.api_key.get_secret_value()) == 40 for u in settings.users)  # type: ignore[union-attr]
    assert (settings.token_ttl_seconds, settings.execution_token_ttl_seconds) == (1200, 43200)
    [fraud] = settings.allocations
    assert (fraud.file_id, fraud.concurrency_limit, fraud.run_as_user_id) == (201, 8, 12)
    assert settings.over_limit_status == 429


def test_connection_limits_default_to_seconds_and_hundreds() -> None:
    """Idle and slow clients are cut off after seconds; hundreds of connections are held."""
    settings = load_settings(None, environ=False)
    assert settings.max_connections == 512
    assert (
        settings.header_timeout_seconds,
        settings.body_timeout_seconds,
        settings.keepalive_timeout_seconds,
    ) == (5.0, 10.0, 10.0)


def test_repr_masks_secrets() -> None:
    """Passwords and API keys never show in the settings' repr."""
    text = repr(load_settings(None, environ=False))
    assert "cr-admin-password" not in text
    assert "EMULATOR-FAKE" not in text


def test_precedence_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Environment beats the file; explicit overrides beat both."""
    path = tmp_path / "e.toml"
    path.write_text("port = 1111\nseed = 5\n[behavior]\nlatency_ms = 1.0\n")
    monkeypatch.setenv("STREAMPROC_EMULATOR_PORT", "2222")
    monkeypatch.setenv("STREAMPROC_EMULATOR_BEHAVIOR__LATENCY_MS", "7")
    settings = load_settings(path, {"seed": 9})
    assert (settings.port, settings.seed, settings.behavior.latency_ms) == (2222, 9, 7.0)
    assert load_settings(path, environ=False).port == 1111


def test_flat_behaviour_overrides_apply_to_every_task(tmp_path: Path) -> None:
    """latency_ms given as an override replaces the per-task value too."""
    path = tmp_path / "e.toml"
    path.write_text("[task_behavior.201]\nlatency_ms = 30.0\nerror_rate = 0.5\n")
    settings = load_settings(path, {"latency_ms": 2, "error_rate": 0.0}, environ=False)
    assert settings.behavior_for(201).latency_ms == 2
    assert settings.behavior_for(201).error_rate == 0.0
    assert load_settings(path, environ=False).behavior_for(201).latency_ms == 30


def test_allocations_accept_api_field_names() -> None:
    """Allocation overrides may use the API's camelCase names."""
    settings = load_settings(
        None, {"allocations": [{"fileId": 149, "concurrencyLimit": 3}]}, environ=False
    )
    assert settings.allocations[0].concurrency_limit == 3


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("prot = 1\n", "prot", "Extra inputs"),
        ("port = 'x'\n", "port", "integer"),
        ("port = 70000\n", "port", "less than or equal"),
        ("public_url = 'ftp://x'\n", "public_url", "http"),
        ("tenant_uuid = 'nope'\n", "tenant_uuid", "UUID"),
        ("over_limit_status = 500\n", "over_limit_status", "429"),
        ("[behavior]\nerror_rate = 2.0\n", "behavior.error_rate", "less than"),
        ("[task_behavior.201]\nlatency = 1\n", "task_behavior.201.latency", "Extra"),
        ("[[users]]\nid = 1\nusername = 'u'\npassword = 'p'\napi_key = 'short'\n",
         "users[0].api_key", "40 characters"),
        ("[[users]]\nid = 1\nusername = 'u'\npassword = 'p'\n"
         "[[users]]\nid = 1\nusername = 'v'\npassword = 'p'\n", "users", "same id"),
        ("[[allocations]]\nfile_id = 201\n[[allocations]]\nfile_id = 201\n", "allocations",
         "twice"),
        ("[[allocations]]\nconcurrency_limit = 0\n", "allocations[0].file_id", "required"),
        ("this is = not toml", "config", "not valid TOML"),
    ],
)  # fmt: skip
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    """Each invalid file raises ConfigError naming the dotted key and the problem."""
    path = tmp_path / "e.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=False)
    assert info.value.key == key
    assert problem in info.value.problem


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist fails at start."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ=False)


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    """A rejected API key is not quoted in the error."""
    path = tmp_path / "e.toml"
    path.write_text("[[users]]\nid = 1\nusername = 'u'\npassword = 'p'\napi_key = 'leaky-key'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=False)
    assert "leaky-key" not in str(info.value)
