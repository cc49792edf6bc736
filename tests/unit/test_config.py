"""Processor settings: TOML plus STREAMPROC_* overrides, errors by key path, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from streamproc.config import ProcessingSettings, describe, load_settings
from streamproc.controlroom.transport import DEFAULT_TRANSPORT
from streamproc.errors import ConfigError
from streamproc.redaction import KAFKA_SECRET_PROPERTIES

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
    assert settings.observability.tracing.enabled is False


def test_the_environment_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STREAMPROC_KAFKA__GROUP_ID wins over the file; the file's other keys stay."""
    path = toml(tmp_path, '[kafka]\ngroup_id = "from-file"\ninput_topic = "payments"\n')
    monkeypatch.setenv("STREAMPROC_KAFKA__GROUP_ID", "fraud-2")
    settings = load_settings(path)
    assert settings.kafka.group_id == "fraud-2"
    assert settings.kafka.input_topic == "payments"


def test_tracing_is_off_by_default_and_set_like_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing is off until enabled; [observability.tracing] keys have environment overrides."""
    assert load_settings().observability.tracing.enabled is False
    monkeypatch.setenv("STREAMPROC_OBSERVABILITY__TRACING__ENABLED", "true")
    monkeypatch.setenv("STREAMPROC_OBSERVABILITY__TRACING__SAMPLE_RATIO", "0.25")
    tracing = load_settings().observability.tracing
    assert (tracing.enabled, tracing.sample_ratio) == (True, 0.25)
    assert tracing.endpoint == "http://127.0.0.1:4318/v1/traces"


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
        ("[observability.tracing]\nsample_ratio = 1.5\n", "observability.tracing.sample_ratio"),
        ('[observability.tracing]\nendpoint = "otel:4318"\n', "observability.tracing.endpoint"),
        ('[observability.tracing]\nservice_name = ""\n', "observability.tracing.service_name"),
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
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["group.id"] == "g"
    assert consumer["fetch.min.bytes"] == "1024"
    # An empty fetch held longer than a fraction of the SLA makes the events behind it late.
    assert consumer["fetch.wait.max.ms"] <= ProcessingSettings().decision_sla_ms / 5
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


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A config file with bytes that are not UTF-8 fails under --config, quoting no byte."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[controlroom]\npassword = "p\xe4ss-Secret"\n')
    error = config_error(path)
    assert error.key == "--config"
    assert "not UTF-8" in error.problem
    assert "Secret" not in str(error)


def test_arrays_nested_too_deeply_for_the_toml_reader_are_a_config_error(tmp_path: Path) -> None:
    """A document the TOML reader cannot descend is refused under --config, not a crash."""
    error = config_error(toml(tmp_path, "a = " + "[" * 5000 + "]" * 5000 + "\n"))
    assert error.key == "--config"


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("STREAMPROC_CONTROLROOM", "controlroom"),
        ("STREAMPROC_KAFKA__CONSUMER_OVERRIDES", "kafka.consumer_overrides"),
        ("STREAMPROC_API_TASKS", "api_tasks"),
    ],
)
@pytest.mark.parametrize("text", ["{bad", "not json", ""])
def test_malformed_json_in_a_whole_value_variable_names_key_and_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, key: str, text: str
) -> None:
    """A table or list given as a variable must be JSON; if not, the key and the variable are
    named (the value is not quoted)."""
    monkeypatch.setenv(variable, text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == key
    assert f"{variable} is not valid JSON" in info.value.problem


def test_whole_value_variables_hold_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """STREAMPROC_KAFKA__CONSUMER_OVERRIDES and STREAMPROC_CONTROLROOM take JSON objects."""
    monkeypatch.setenv("STREAMPROC_KAFKA__CONSUMER_OVERRIDES", '{"fetch.min.bytes": "1"}')
    monkeypatch.setenv("STREAMPROC_CONTROLROOM", '{"username": "u", "api_key": "k"}')
    settings = load_settings()
    assert settings.kafka.consumer_overrides == {"fetch.min.bytes": "1"}
    assert (settings.controlroom.username, settings.controlroom.password) == ("u", None)


@pytest.mark.parametrize(
    "variable",
    [
        "STREAMPROC_PROCESING__MAX_IN_FLIGHT",
        "STREAMPROC_PROCESSING__MAX_IN_FLGHT",
        "STREAMPROC_PROCESSING__RETRY__ATTEMPTS",
        "STREAMPROC_KAFKA__CONSUMER_OVERRIDES__FETCH_MIN_BYTES",
        "STREAMPROC_",
        "STREAMPROC_KAFKA____GROUP_ID",
    ],
)
def test_a_variable_that_names_no_setting_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """Any STREAMPROC_* variable that names no setting fails at start with its name."""
    monkeypatch.setenv(variable, "abc")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert variable in str(info.value)


def test_the_emulators_variables_are_left_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """STREAMPROC_EMULATOR_* configure `streamproc emulator`; the processor ignores them."""
    monkeypatch.setenv("STREAMPROC_EMULATOR_PORT", "8091")
    monkeypatch.setenv("STREAMPROC_EMULATOR_BEHAVIOR__LATENCY_MS", "5")
    assert load_settings().kafka.group_id == "streamproc"


def test_variables_are_converted_by_the_keys_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable's text becomes the key's type: numbers, booleans, nested keys, secrets."""
    monkeypatch.setenv("STREAMPROC_PROCESSING__MAX_IN_FLIGHT", "250")
    monkeypatch.setenv("STREAMPROC_PROCESSING__DRAIN_TIMEOUT_S", "2.5")
    monkeypatch.setenv("STREAMPROC_PROCESSING__RETRY__MAX_ATTEMPTS", "5")
    monkeypatch.setenv("STREAMPROC_OBSERVABILITY__HTTP_ENABLED", "no")
    monkeypatch.setenv("streamproc_kafka__group_id", "lower-case-works")
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__PASSWORD", "1234")
    settings = load_settings()
    assert settings.processing.max_in_flight == 250
    assert settings.processing.drain_timeout_s == 2.5
    assert settings.processing.retry.max_attempts == 5
    assert settings.observability.http_enabled is False
    assert settings.kafka.group_id == "lower-case-works"
    assert settings.controlroom.password is not None
    assert settings.controlroom.password.get_secret_value() == "1234"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[processing]\nmax_in_flight = "1000"\n', "processing.max_in_flight"),
        ("[processing]\nmax_in_flight = 1000.0\n", "processing.max_in_flight"),
        ('[processing]\ndrain_timeout_s = "10"\n', "processing.drain_timeout_s"),
        ("[observability]\nhttp_enabled = 1\n", "observability.http_enabled"),
        ('[processing.retry]\nmax_attempts = "3"\n', "processing.retry.max_attempts"),
        ("[[api_tasks]]\nname = 5\nrepository_path = 'x'\n", "api_tasks.0.name"),
    ],
)
def test_file_values_must_have_the_keys_type(tmp_path: Path, text: str, key: str) -> None:
    """A file says what type a value is: a string is not a number, a number not a boolean."""
    assert config_error(toml(tmp_path, text)).key == key


@pytest.mark.parametrize("key", ["drain_timeout_s", "startup_timeout_s"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_infinity_and_nan_are_not_durations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    """inf or nan seconds, from the file or the environment, fails naming the key."""
    assert config_error(toml(tmp_path, f"[processing]\n{key} = {value}\n")).key == (
        f"processing.{key}"
    )
    monkeypatch.setenv(f"STREAMPROC_PROCESSING__{key.upper()}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == f"processing.{key}"


@pytest.mark.parametrize(
    ("credential", "key"),
    [
        ('password = ""', "controlroom.password"),
        ('api_key = ""', "controlroom.api_key"),
        ('bearer_token = ""', "controlroom.bearer_token"),
        ('password = "p"\nadmin_username = "a"\nadmin_password = ""', "controlroom.admin_password"),
        ('username = ""\npassword = "p"', "controlroom.username"),
    ],
)
def test_an_empty_credential_is_refused(tmp_path: Path, credential: str, key: str) -> None:
    """An empty password, API key, token or user name fails naming its key."""
    error = config_error(toml(tmp_path, f"[controlroom]\n{credential}\n"))
    assert error.key == key


@pytest.mark.parametrize(
    "url",
    [
        "http://user:url-Secret-1@cr.example.com",
        "https://user@cr.example.com/",
        "http://:url-Secret-1@cr.example.com:8080",
    ],
)
def test_a_control_room_url_with_user_info_is_refused(tmp_path: Path, url: str) -> None:
    """Credentials inside controlroom.url are refused, and never quoted back."""
    error = config_error(toml(tmp_path, f'[controlroom]\nurl = "{url}"\npassword = "p"\n'))
    assert error.key == "controlroom.url"
    assert "user name or password" in error.problem
    assert "url-Secret-1" not in str(error)


@pytest.mark.parametrize("url", ["http://", "http://[::1", "https://host:port/x"])
def test_a_control_room_url_that_is_no_url_is_refused(tmp_path: Path, url: str) -> None:
    """A URL without a host, or unparsable, fails naming controlroom.url."""
    error = config_error(toml(tmp_path, f'[controlroom]\nurl = "{url}"\npassword = "p"\n'))
    assert error.key == "controlroom.url"


def test_messages_carry_no_validator_prefix(tmp_path: Path) -> None:
    """Problems read as sentences, without pydantic's "Value error, " prefix."""
    for text in (
        '[controlroom]\nusername = "u"\npassword = "p"\napi_key = "k"\n',
        '[controlroom]\nurl = "ftp://x"\npassword = "p"\n',
        '[kafka.producer_overrides]\nacks = "1"\n',
        '[routing]\ndefault_tasks = ["nope"]\n',
    ):
        assert "Value error" not in str(config_error(toml(tmp_path, text)))


@pytest.mark.parametrize("name", sorted(KAFKA_SECRET_PROPERTIES))
def test_every_librdkafka_secret_property_is_masked(name: str) -> None:
    """Each librdkafka property that can carry a secret is masked in describe() (so in
    `run --check` and the start-up log line), whichever override table holds it."""
    secret = "kafka-Property-Secret-9"
    overrides = orjson.dumps({name: secret}).decode()
    environ = {
        "STREAMPROC_KAFKA__CONSUMER_OVERRIDES": overrides,
        "STREAMPROC_KAFKA__PRODUCER_OVERRIDES": overrides,
    }
    described = describe(load_settings(environ=environ))
    assert secret not in orjson.dumps(described).decode()
    assert described["kafka"]["consumer_overrides"][name] == "**********"


def test_sasl_oauthbearer_extensions_are_masked_and_other_values_redacted() -> None:
    """The OIDC extensions (key=value pairs) are masked; a password inside another value,
    such as a URL's, is redacted; plain values stay readable."""
    overrides = {
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-1,apiSecret=ext-Secret-2",
        "sasl.oauthbearer.token.endpoint.url": "https://client:url-Secret-3@idp.example/token",
        "fetch.min.bytes": "1",
    }
    environ = {"STREAMPROC_KAFKA__CONSUMER_OVERRIDES": orjson.dumps(overrides).decode()}
    table = describe(load_settings(environ=environ))["kafka"]["consumer_overrides"]
    assert table["sasl.oauthbearer.extensions"] == "**********"
    assert "url-Secret-3" not in table["sasl.oauthbearer.token.endpoint.url"]
    assert table["fetch.min.bytes"] == "1"


def test_a_refused_identity_is_reported_against_its_own_key(tmp_path: Path) -> None:
    """A refused bearer token is a problem of controlroom.bearer_token, not of the user name."""
    bearer = load_settings(toml(tmp_path, '[controlroom]\nbearer_token = "t"\n'))
    assert bearer.controlroom.identity_key == "controlroom.bearer_token"
    assert load_settings().controlroom.identity_key == "controlroom.username"


def test_exactly_once_needs_a_transaction_interval_below_the_sla() -> None:
    """A decision is seen only when its transaction commits: an interval as long as the SLA
    could never be on time, and is refused at start naming the key."""
    environ = {
        "STREAMPROC_PROCESSING__DELIVERY": "exactly_once",
        "STREAMPROC_PROCESSING__DECISION_SLA_MS": "100",
        "STREAMPROC_PROCESSING__TRANSACTION_INTERVAL_MS": "100",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert info.value.key == "processing.transaction_interval_ms"
    assert "decision_sla_ms" in info.value.problem
    environ["STREAMPROC_PROCESSING__TRANSACTION_INTERVAL_MS"] = "50"
    assert load_settings(environ=environ).processing.delivery == "exactly_once"


def test_exactly_once_gives_the_producer_a_stable_transactional_id() -> None:
    """The transactional id stays the same across restarts of one replica (so a restart
    fences what its predecessor left open) and can be set."""
    first = load_settings(environ={}).kafka.producer_config(transactional=True)
    again = load_settings(environ={}).kafka.producer_config(transactional=True)
    assert first["transactional.id"] == again["transactional.id"]
    assert "transactional.id" not in load_settings(environ={}).kafka.producer_config()
    chosen = load_settings(environ={"STREAMPROC_KAFKA__TRANSACTIONAL_ID": "replica-7"})
    assert chosen.kafka.producer_config(transactional=True)["transactional.id"] == "replica-7"
