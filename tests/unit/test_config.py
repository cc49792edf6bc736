"""Processor settings: TOML plus STREAMPROC_* overrides, errors by key path, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from streamproc.config import describe, load_settings
from streamproc.controlroom.transport import DEFAULT_TRANSPORT
from streamproc.errors import ConfigError

SECRETS = {
    "password": "cr-Password-Secret-1",
    "api_key": "cr-ApiKey-Secret-2",
    "admin_password": "cr-Admin-Secret-3",
    "sasl_password": "kafka-Sasl-Secret-4",
    "ssl.key.password": "kafka-Key-Secret-5",
    "sasl.oauthbearer.client.secret": "kafka-Oauth-Secret-6",
}


@pytest.fixture(autouse=True)
def _no_streamproc_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell running the tests must not leak STREAMPROC_* settings in."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMPROC_"):
            monkeypatch.delenv(name)


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streamproc.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value


def test_defaults_load_without_a_file() -> None:
    """With no file and no environment, the built-in defaults make a valid configuration."""
    settings = load_settings()
    assert settings.kafka.group_id == "streamproc"
    assert settings.kafka.input_topic == "transactions"
    assert settings.processing.ordering == "key"
    assert [t.name for t in settings.api_tasks] == ["fraud"]
    assert settings.routing.default_tasks == ("fraud",)


def test_the_configured_execute_transport_defaults_to_the_measured_one() -> None:
    """Without a setting, the processor uses the transport the execute benchmark chose."""
    assert load_settings().controlroom.execute_transport == DEFAULT_TRANSPORT


def test_a_toml_file_loads() -> None:
    """The shipped config/local.toml loads, and its values are the ones in force."""
    settings = load_settings(Path(__file__).parents[2] / "config" / "local.toml")
    assert settings.controlroom.admin_username == "cr-admin"
    assert settings.processing.retry.max_delay_ms == 200
    assert settings.api_tasks[0].mapping.inputs[2].default == "USD"
    assert settings.observability.http_port == 9108


def test_the_environment_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STREAMPROC_KAFKA__GROUP_ID wins over the file; the file's other keys stay."""
    path = toml(tmp_path, '[kafka]\ngroup_id = "from-file"\ninput_topic = "payments"\n')
    monkeypatch.setenv("STREAMPROC_KAFKA__GROUP_ID", "fraud-2")
    settings = load_settings(path)
    assert settings.kafka.group_id == "fraud-2"
    assert settings.kafka.input_topic == "payments"


def test_an_unknown_key_fails_with_its_dotted_path(tmp_path: Path) -> None:
    """A misspelt key is an error naming the key's path, not a silently ignored setting."""
    error = config_error(toml(tmp_path, "[kafka]\nbogus_key = 1\n"))
    assert error.key == "kafka.bogus_key"
    assert "unknown key" in str(error)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[processing]\nmax_in_flight = -1\n", "processing.max_in_flight"),
        ('[processing]\nordering = "random"\n', "processing.ordering"),
        ('[kafka]\nauto_offset_reset = "newest"\n', "kafka.auto_offset_reset"),
        ("[processing.retry]\nmax_attempts = 0\n", "processing.retry.max_attempts"),
        ('[controlroom]\nurl = "ftp://cr"\npassword = "p"\n', "controlroom.url"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, text: str, key: str) -> None:
    """An out-of-range number or a value outside a Literal is reported under its key path."""
    error = config_error(toml(tmp_path, text))
    assert error.key == key
    assert key in str(error)


def test_a_bad_value_from_the_environment_names_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment overrides are validated like the file, and reported by key path."""
    monkeypatch.setenv("STREAMPROC_PROCESSING__ORDERING", "random")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "processing.ordering"


@pytest.mark.parametrize(
    ("credentials", "found"),
    [
        ('password = "p"\napi_key = "k"\n', "found 2: password, api_key"),
        ('password = "p"\nbearer_token = "t"\n', "found 2: password, bearer_token"),
        ("", "found 0: none"),
    ],
)
def test_exactly_one_control_room_credential(tmp_path: Path, credentials: str, found: str) -> None:
    """The bot developer logs in with exactly one of password, api_key or bearer_token."""
    error = config_error(toml(tmp_path, f'[controlroom]\nusername = "u"\n{credentials}'))
    assert error.key == "controlroom"
    assert "exactly one of password, api_key or bearer_token" in error.problem
    assert found in error.problem


@pytest.mark.parametrize("credential", ['api_key = "k"', 'bearer_token = "t"'])
def test_any_one_credential_is_enough(tmp_path: Path, credential: str) -> None:
    """A configuration with a single credential loads (the default password does not linger)."""
    settings = load_settings(toml(tmp_path, f'[controlroom]\nusername = "u"\n{credential}\n'))
    assert settings.controlroom.password is None


def test_routing_to_an_unknown_task_fails_at_start(tmp_path: Path) -> None:
    """A route naming a task that is not configured is refused before anything runs."""
    error = config_error(toml(tmp_path, '[routing]\ndefault_tasks = ["nope"]\n'))
    assert error.key == "routing"
    assert "unknown task 'nope'" in error.problem
    renamed = '[[api_tasks]]\nname = "scoring"\nrepository_path = "Bots\\\\Score"\n'
    error = config_error(toml(tmp_path, renamed))  # the default route still says "fraud"
    assert (error.key, "unknown task 'fraud'" in error.problem) == ("routing", True)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    """--config naming a missing file, or a file that is not TOML, fails under "--config"."""
    assert config_error(tmp_path / "missing.toml").key == "--config"
    error = config_error(toml(tmp_path, "[kafka\n"))
    assert (error.key, "not valid TOML" in error.problem) == ("--config", True)


def test_describe_never_shows_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Printing or logging the settings masks every credential, override tables included."""
    path = toml(
        tmp_path,
        f"""
[kafka]
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "svc"
sasl_password = "{SECRETS["sasl_password"]}"
[kafka.consumer_overrides]
"ssl.key.password" = "{SECRETS["ssl.key.password"]}"
"fetch.min.bytes" = "1"
[kafka.producer_overrides]
"sasl.oauthbearer.client.secret" = "{SECRETS["sasl.oauthbearer.client.secret"]}"
[controlroom]
username = "bot"
api_key = "{SECRETS["api_key"]}"
admin_username = "admin"
admin_password = "{SECRETS["admin_password"]}"
""",
    )
    described = describe(load_settings(path))
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__PASSWORD", SECRETS["password"])
    text = orjson.dumps(described).decode() + orjson.dumps(describe(load_settings())).decode()
    for secret in SECRETS.values():
        assert secret not in text
    assert described["kafka"]["consumer_overrides"] == {
        "ssl.key.password": "**********",
        "fetch.min.bytes": "1",
    }
    assert described["controlroom"]["admin_password"] == "**********"


def test_librdkafka_settings_keep_at_least_once(tmp_path: Path) -> None:
    """librdkafka gets manual commits, cooperative-sticky, idempotence, acks=all and SASL."""
    path = toml(
        tmp_path,
        """
[kafka]
bootstrap_servers = "broker:9093"
group_id = "g"
security_protocol = "SASL_SSL"
sasl_mechanism = "PLAIN"
sasl_username = "svc"
sasl_password = "pw"
[kafka.consumer_overrides]
"fetch.min.bytes" = "1024"
""",
    )
    kafka = load_settings(path).kafka
    consumer = kafka.consumer_config()
    assert consumer["enable.auto.commit"] is False
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["group.id"] == "g"
    assert consumer["fetch.min.bytes"] == "1024"
    producer = kafka.producer_config()
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"
    for conf in (consumer, producer):
        assert conf["bootstrap.servers"] == "broker:9093"
        assert (conf["sasl.username"], conf["sasl.password"]) == ("svc", "pw")


@pytest.mark.parametrize(
    ("table", "name"),
    [
        ("consumer_overrides", "enable.auto.commit"),
        ("consumer_overrides", "enable.auto.offset.store"),
        ("producer_overrides", "acks"),
        ("producer_overrides", "enable.idempotence"),
    ],
)
def test_overrides_cannot_undo_at_least_once(tmp_path: Path, table: str, name: str) -> None:
    """The override tables refuse the properties the commit-after-ack guarantee rests on."""
    error = config_error(toml(tmp_path, f'[kafka.{table}]\n"{name}" = "true"\n'))
    assert error.key == f"kafka.{table}"
    assert name in error.problem


def test_a_config_path_that_is_not_a_readable_file_is_a_config_error(tmp_path: Path) -> None:
    """A directory given as --config fails with the key and the reason, not a traceback."""
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert caught.value.key == "--config"
    assert "cannot read" in caught.value.problem
