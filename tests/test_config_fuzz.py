"""Hypothesis mutates configs/default.toml: whatever the file says, start-up gives either
a valid config or one line per problem naming the file and the key, never a traceback."""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_gate.config import check_runnable, load_settings
from stream_gate.errors import ConfigError

from .conftest import ROOT
from .test_config_docs import SECTIONS

DEFAULT = tomllib.loads((ROOT / "configs" / "default.toml").read_text())
KEYS = sorted((section, key) for section, model in SECTIONS.items() for key in model.model_fields)
STREAM = {"id": "cam", "url": "rtsp://127.0.0.1:9/cam"}

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=24),
    st.sampled_from(["", "auto", "redis://x:abc/0", "rediss://h/1", "embedded", "/tmp",
                     "cr-fiqa-s", "heuristic", "loop://x", "-1", "0", "1e309"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(["a", "url", "port"]), scalars, max_size=2))


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):  # a TOML basic string: controls and DEL escaped
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F
                             or c in '"\\' else c for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"


def document(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, body in data.items():
        if section == "streams":
            for stream in body:
                lines.append("[[streams]]")
                lines += [f"{k} = {toml(v)}" for k, v in stream.items()]
        elif isinstance(body, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{section} = {toml(body)}")
    return "\n".join(lines) + "\n"


def start_up(path: Path) -> str | None:
    """None when the config would start; else the error, checked for its form."""
    try:
        check_runnable(load_settings(path))
    except ConfigError as exc:
        lines = str(exc).splitlines()
        assert lines and all(ln.startswith(f"{path}: ") or ln.startswith("streams:")
                             for ln in lines), lines
        return str(exc)
    return None


QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
CASES = int(os.environ.get("STREAM_GATE_FUZZ_CASES", "300"))  # more, to search longer


@settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
          suppress_health_check=QUIET)
@given(where=st.sampled_from(KEYS), value=values, typo=st.booleans())
def test_a_changed_value_or_key_is_accepted_or_named(tmp_path: Path, where: tuple[str, str],
                                                     value: Any, typo: bool) -> None:
    section, key = where
    data = json.loads(json.dumps(DEFAULT))  # a deep copy
    data.setdefault(section, {})[key + ("x" if typo else "")] = value
    data["streams"] = [STREAM]
    path = tmp_path / "c.toml"
    path.write_text(document(data))
    error = start_up(path)
    if typo:
        assert error is not None and f"{section}.{key}x: unknown key" in error
    elif error is not None:
        assert f"{section}.{key}" in error or f"{section}: " in error, error


@settings(max_examples=CASES // 3, deadline=None, derandomize=True, database=None,
          suppress_health_check=QUIET)
@given(at=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=8))
def test_bytes_dropped_into_the_file_give_one_clear_error(tmp_path: Path, at: int, junk: bytes
                                                          ) -> None:
    text = (ROOT / "configs" / "default.toml").read_bytes() + b'[[streams]]\nid = "c"\nurl = "x"\n'
    at %= len(text)
    path = tmp_path / "c.toml"
    path.write_bytes(text[:at] + junk + text[at:])
    start_up(path)


BAD = {  # each case the bad-config survey found accepted, or answered with a traceback
    "[redis]\nconnect_timeout_s = inf": "redis.connect_timeout_s: Input should be a finite",
    "[detect]\nmin_face_px = nan": "detect.min_face_px: Input should be a finite",
    '[redis]\nurl = "redis://127.0.0.1:abc/0"': "redis.url: Value error, the port",
    '[redis]\nurl = "redis://127.0.0.1:99999/0"': "redis.url: Value error, the port",
    '[redis]\nurl = "redis://127.0.0.1:6379/0?socket_timeout=x"': "redis.url: Value error, not",
    '[redis]\nurl = "redis://127.0.0.1:6379/abc"': "redis.url: Value error, the database",
    "[select]\ntop_k = 2\n[Select]\ntop_k = 3": "Select: unknown key",
    '[redis]\nkey = ""': "redis.key: String should have at least 1",
    "[select]\ntop_k = true": "select.top_k: Value error, must be a number",
    "[decode]\nreconnect_min_s = 5\nreconnect_max_s = 1": "decode: Value error, reconnect_min_s",
    "[redis]\nmaxlen = 9223372036854775808": "redis.maxlen: Input should be less than",
    "[detect]\nmax_side = 10": "detect.max_side: Value error, must be 0 (auto)",
    # A stream's overrides hold the same rules as their sections.
    '[[streams]]\nid = "o"\nurl = "rtsp://h/o"\n[streams.select]\ntop_k = true':
        "streams.0.select.top_k: Value error, must be a number",
    '[[streams]]\nid = "o"\nurl = "rtsp://h/o"\n[streams.score]\nmin_eye_px = inf':
        "streams.0.score.min_eye_px: Input should be a finite",
}


def test_every_surveyed_bad_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    for text, want in BAD.items():
        path = tmp_path / "c.toml"
        path.write_text(text + '\n[[streams]]\nid = "c"\nurl = "rtsp://h/c"\n')
        error = start_up(path)
        assert error is not None and len(error.splitlines()) == 1, (text, error)
        assert want in error, (text, error)


def test_environment_errors_name_the_variable(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, want in [
            ("STREAM_GATE__SELEC__TOP_K", "3", "STREAM_GATE__SELEC__TOP_K: unknown setting"),
            ("STREAM_GATE__STREAMS", "notjson", "STREAM_GATE__STREAMS: not a valid value"),
            ("STREAM_GATE__DECODE", "abc", "STREAM_GATE__DECODE: not a valid value"),
            ("STREAM_GATE__SELECT__TOP_K", "abc", "STREAM_GATE__SELECT__TOP_K: select.top_k")]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(ConfigError) as err:
                load_settings(None)
            assert str(err.value).startswith(want), str(err.value)
