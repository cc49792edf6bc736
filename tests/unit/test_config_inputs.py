"""No configuration input makes ``streamproc run --check`` crash or show a secret.

Every bad input once found to crash or leak, then hypothesis-generated TOML documents (of
real and made-up sections, keys and values) and STREAMPROC_* variables: each run exits 0
with the settings, or 2 with one line naming a key that exists in the input or the settings
(or the variable, or --config), never a traceback, and never the secret planted in every
credential of the input.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from streamproc import cli, logs
from streamproc.config import Settings
from streamproc.envsettings import admitted_types, model_of
from streamproc.redaction import KAFKA_SECRET_PROPERTIES

SECRET = "cfg-Planted-Secret-31"
ROOT = Path(__file__).parents[2]
_ERROR = re.compile(r"^streamproc: configuration error: config key '(?P<key>[^']*)': .+$")


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``env`` as the STREAMPROC_* variables, for the duration."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMPROC_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        yield


def run_check(document: bytes | None, env: Mapping[str, str]) -> tuple[int, str, str]:
    """``streamproc run --check`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        argv = ["run", "--check"]
        if document is not None:
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            path = Path(folder) / "streamproc.toml"
            path.write_bytes(document)
            argv += ["--config", str(path)]
        stack.enter_context(environment(env))
        # run configures process-wide logging onto stderr; keep this process's as it is.
        stack.enter_context(mock.patch.object(logs, "configure", return_value=None))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def names_a_key(key: str, document: Any, env: Mapping[str, str]) -> bool:
    """Whether ``key`` is --config, a variable that was set, or a dotted path that exists in
    the settings model or in the input (the rest of a path inside a mapping is free)."""
    if key == "--config" or key in env:
        return True
    given: Any = document if isinstance(document, dict) else {}
    for name, value in env.items():
        if value.startswith(("{", "[")):
            with contextlib.suppress(orjson.JSONDecodeError):
                path = name[len("STREAMPROC_") :].lower().split("__")
                node = given
                for part in path[:-1]:
                    node = node.setdefault(part, {}) if isinstance(node, dict) else {}
                if isinstance(node, dict):
                    node[path[-1]] = orjson.loads(value)
    model: type[BaseModel] | None = Settings
    for part in key.split("."):
        if part.isdigit():
            given = given[int(part)] if isinstance(given, list) and int(part) < len(given) else {}
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None and not (isinstance(given, dict) and part in given):
            return False
        model = None
        if field is not None:
            types = admitted_types(field.annotation)
            if any(get_origin(t) is dict for t in types):
                return True  # a mapping's keys are the input's own
            # A table, or a list of tables.
            for candidate in (t for member in types for t in (member, *get_args(member))):
                model = model or model_of(candidate)
        given = given.get(part, {}) if isinstance(given, dict) else {}
    return True


def check(document: bytes | None, env: Mapping[str, str], expected_key: str | None = None) -> str:
    """Run --check and hold it to the rules; the key named, or "" when it passed."""
    status, out, err = run_check(document, env)
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    if status == 0:
        assert err == ""
        orjson.loads(out)
        assert expected_key is None, f"accepted, though {expected_key} is wrong"
        return ""
    assert status == 2, (status, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = _ERROR.match(lines[0])
    assert match is not None, lines[0]
    key = match["key"]
    parsed: Any = None
    if document is not None:
        with contextlib.suppress(UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            parsed = tomllib.loads(document.decode())
    assert names_a_key(key, parsed, env), (key, lines[0])
    if expected_key is not None:
        assert key == expected_key, lines[0]
    return key


# Every input once found to crash, pass or leak, with the key it must name.
FOUND: list[tuple[str, bytes | None, dict[str, str], str]] = [
    ("a file that is not UTF-8", b'[controlroom]\npassword = "\xff' + SECRET.encode() + b'"\n',
     {}, "--config"),
    ("malformed JSON for a section", None, {"STREAMPROC_CONTROLROOM": "{bad"}, "controlroom"),
    ("malformed JSON for overrides", None, {"STREAMPROC_KAFKA__CONSUMER_OVERRIDES": "{bad"},
     "kafka.consumer_overrides"),
    ("a list that is not JSON", None, {"STREAMPROC_API_TASKS": "not json"}, "api_tasks"),
    ("a misspelt section", None, {"STREAMPROC_PROCESING__MAX_IN_FLIGHT": "abc"},
     "STREAMPROC_PROCESING__MAX_IN_FLIGHT"),
    ("a password in the URL", None,
     {"STREAMPROC_CONTROLROOM__URL": f"http://user:{SECRET}@cr.example.com"}, "controlroom.url"),
    ("a password in the URL, in the file", f'[controlroom]\nurl = "https://u:{SECRET}@cr"\n'
     .encode(), {}, "controlroom.url"),
    ("inf seconds to drain", b"[processing]\ndrain_timeout_s = inf\n", {},
     "processing.drain_timeout_s"),
    ("inf seconds to start", None, {"STREAMPROC_PROCESSING__STARTUP_TIMEOUT_S": "inf"},
     "processing.startup_timeout_s"),
    ("a string for a number", b'[processing]\nmax_in_flight = "1000"\n', {},
     "processing.max_in_flight"),
    ("an empty password", b'[controlroom]\npassword = ""\n', {}, "controlroom.password"),
]  # fmt: skip


@pytest.mark.parametrize(("document", "env", "key"), [case[1:] for case in FOUND],
                         ids=[case[0] for case in FOUND])  # fmt: skip
def test_each_input_once_found_wrong_exits_2_naming_its_key(
    document: bytes | None, env: dict[str, str], key: str
) -> None:
    """Each of them now exits 2 in one line naming its key, with no traceback or secret."""
    check(document, env, expected_key=key)


def test_secret_librdkafka_properties_pass_but_are_not_shown() -> None:
    """Every librdkafka property that can carry a secret is accepted and printed masked."""
    overrides = {name: f"{SECRET}-{i}" for i, name in enumerate(sorted(KAFKA_SECRET_PROPERTIES))}
    env = {"STREAMPROC_KAFKA__PRODUCER_OVERRIDES": orjson.dumps(overrides).decode()}
    assert check(None, env) == ""


@pytest.mark.parametrize(
    ("argv", "env", "document", "key"),
    [
        (["--config", "bad.toml"], {}, b'[kafka]\ngroup_id = "\xfe"\n', "--config"),
        ([], {"STREAMPROC_API_TASKS": "not json"}, None, "api_tasks"),
        ([], {"STREAMPROC_PROCESING__MAX_IN_FLIGHT": "abc"}, None,
         "STREAMPROC_PROCESING__MAX_IN_FLIGHT"),
    ],
)  # fmt: skip
def test_the_installed_command_exits_2_without_a_traceback(
    tmp_path: Path, argv: list[str], env: dict[str, str], document: bytes | None, key: str
) -> None:
    """The same holds for a real `streamproc run --check` process."""
    if document is not None:
        (tmp_path / "bad.toml").write_bytes(document)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMPROC_")}
    result = subprocess.run(
        [sys.executable, "-m", "streamproc", "run", "--check", *argv],
        cwd=tmp_path,
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"config key '{key}'" in result.stderr


# -- generated inputs ---------------------------------------------------------------------

SECRET_KEYS = {
    "controlroom": ["password", "api_key", "bearer_token", "admin_password", "admin_api_key"],
    "kafka": ["sasl_password"],
}
SECTIONS = {name: sorted(getattr(Settings.model_fields[name].annotation, "model_fields", {}))
            for name in Settings.model_fields}  # fmt: skip
# What an environment variable can hold: no NUL, no lone surrogate.
ENV_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
made_up = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.sampled_from(["1000", "true", "inf", "PLAIN", "http://h", "key", "partition", "json"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(made_up, inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A settings document: real and made-up sections and keys, any values, and the secret
    planted in some credentials."""
    doc: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "procesing", "extra"]), max_size=4)):
        keys = SECTIONS.get(section) or ["x"]
        table = draw(st.dictionaries(st.one_of(st.sampled_from(keys), made_up), values, max_size=4))
        doc[section] = draw(st.sampled_from([table, [table], table]))
    for section, keys in SECRET_KEYS.items():
        for key in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)):
            table = doc.setdefault(section, {})
            if isinstance(table, dict):
                table[key] = draw(st.sampled_from([SECRET, "", f"{SECRET} ", 5]))
    if draw(st.booleans()):
        kafka = doc.setdefault("kafka", {})
        if isinstance(kafka, dict):
            name = draw(st.sampled_from(sorted(KAFKA_SECRET_PROPERTIES)))
            kafka["consumer_overrides"] = {name: SECRET, "fetch.min.bytes": "1"}
    if draw(st.booleans()):
        controlroom = doc.setdefault("controlroom", {})
        if isinstance(controlroom, dict):
            controlroom["url"] = draw(
                st.sampled_from([f"http://u:{SECRET}@cr", "https://cr.example.com", "cr"])
            )
    return doc


def toml_value(value: Any) -> str:
    """A value as TOML inline syntax (JSON escapes are TOML escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return (
        "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    )


def to_toml(doc: dict[str, Any]) -> bytes:
    return "".join(f"{toml_value(k)} = {toml_value(v)}\n" for k, v in doc.items()).encode()


GENERATED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GENERATED
@given(documents())
def test_generated_documents_never_crash_or_show_a_secret(doc: dict[str, Any]) -> None:
    """Any document: the settings, or exit 2 naming a key; no traceback, no secret."""
    check(to_toml(doc), {})


@GENERATED
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_a_file_never_crash(document: bytes) -> None:
    """Bytes that are not TOML, or not text, are a configuration error under --config."""
    check(document, {})


@st.composite
def variables(draw: st.DrawFn) -> dict[str, str]:
    """STREAMPROC_* variables naming real and made-up sections and keys, with any text
    (JSON or not) and the secret planted in some credentials."""
    env: dict[str, str] = {}
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from([*SECTIONS, "procesing", "emulator_port"]))
        keys = SECTIONS.get(section) or []
        parts = [section]
        if keys and draw(st.booleans()):
            parts.append(draw(st.one_of(st.sampled_from(keys), made_up)))
        name = "STREAMPROC_" + "__".join(parts).upper()
        text = draw(
            st.one_of(
                st.text(ENV_TEXT, max_size=20),
                values.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode()
                           if not isinstance(v, float) else repr(v)),
            )
        )  # fmt: skip
        env[name] = text
    for key in draw(st.lists(st.sampled_from(SECRET_KEYS["controlroom"]), max_size=2)):
        env[f"STREAMPROC_CONTROLROOM__{key.upper()}"] = SECRET
    if draw(st.booleans()):
        env["STREAMPROC_CONTROLROOM__URL"] = f"http://user:{SECRET}@cr.example.com"
    return env


@GENERATED
@given(variables(), st.one_of(st.none(), documents().map(to_toml)))
def test_generated_variables_never_crash_or_show_a_secret(
    env: dict[str, str], document: bytes | None
) -> None:
    """Any variables, over any document: the settings, or exit 2 naming a key or the
    variable; no traceback, no secret."""
    check(document, env)
