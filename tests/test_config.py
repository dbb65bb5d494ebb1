"""Config loading: precedence, per-stream overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_gate.config import load_settings
from stream_gate.errors import ConfigError

from .conftest import ROOT, run_cli


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


def test_shipped_configs_load() -> None:
    for name in ("default.toml", "demo.toml", "cameras.example.toml"):
        s = load_settings(ROOT / "configs" / name)
        assert s.detect.batch_size >= 1
    cams = load_settings(ROOT / "configs" / "cameras.example.toml")
    assert len(cams.streams) >= 2
    gpu = load_settings(ROOT / "docker" / "cameras.toml")
    assert gpu.runtime.engine == "tensorrt" and len(gpu.streams) == 4


def test_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[[streams]]\nid = "a"\nurl = "x.mp4"\n[streams.select]\ntop_kk = 2\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert "streams.0.select.top_kk: unknown key" in str(exc.value)
    assert str(cfg) in str(exc.value)


def test_bad_value_names_key_and_reason(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[detect]\nbatch_size = 0\n[redis]\nurl = 'http://x'\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    msg = str(exc.value)
    assert "detect.batch_size: Input should be greater than or equal to 1" in msg
    assert "redis.url:" in msg


def test_duplicate_stream_ids_rejected(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[[streams]]\nid="a"\nurl="x"\n[[streams]]\nid="a"\nurl="y"\n')
    with pytest.raises(ConfigError, match="duplicate stream id 'a'"):
        load_settings(cfg)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[detect\n"))


def test_env_beats_file_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, "[select]\ntop_k = 2\nmin_quality = 10\n")
    s = load_settings(cfg, defaults={"select": {"top_k": 5, "improve_delta": 7}})
    assert (s.select.top_k, s.select.min_quality, s.select.improve_delta) == (2, 10, 7)
    monkeypatch.setenv("STREAM_GATE__SELECT__TOP_K", "4")
    monkeypatch.setenv("STREAM_GATE__REDIS__URL", "embedded")
    s = load_settings(cfg)
    assert s.select.top_k == 4
    assert s.redis.url == "embedded"


def test_per_stream_overrides_merge_over_globals(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
[select]
policy = "improving"
min_quality = 30
[[streams]]
id = "door"
url = "a.mp4"
[streams.select]
min_quality = 55
[streams.score]
max_yaw_deg = 20
[[streams]]
id = "hall"
url = "b.mp4"
""")
    s = load_settings(cfg)
    door, hall = s.select_for("door"), s.select_for("hall")
    assert (door.policy, door.min_quality) == ("improving", 55)
    assert (hall.policy, hall.min_quality) == ("improving", 30)
    assert s.score_for("door").max_yaw_deg == 20
    assert s.score_for("hall").max_yaw_deg == s.score.max_yaw_deg


def test_cli_bad_key_exits_2_with_one_clear_message(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[detect]\nmax_sid = 640\n")
    res = run_cli("run", "--config", str(cfg))
    assert res.returncode == 2
    assert "detect.max_sid: unknown key" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_without_streams_says_so(tmp_path: Path) -> None:
    res = run_cli("run", "--config", str(write(tmp_path, "[select]\ntop_k = 1\n")))
    assert res.returncode == 2
    assert "no [[streams]] configured" in res.stderr


def test_cluster_settings_fail_fast_with_the_key(tmp_path: Path) -> None:
    stream = '[[streams]]\nid = "a"\nurl = "rtsp://cam/a"\n'
    res = run_cli("run", "--config", str(write(
        tmp_path, '[cluster]\nenabled = true\n[redis]\nurl = "embedded"\n' + stream)))
    assert res.returncode == 2
    assert "redis.url: cluster mode needs a Redis every worker reaches" in res.stderr
    for text, said in (
            ("heartbeat_s = 5\nmembership_timeout_s = 6", "at least twice heartbeat_s"),
            ('member_id = "has space"', "cluster.member_id: String should match"),
            ('url = "http://redis:6379"', "cluster.url: Value error, must be 'embedded' or"),
            ("weight = 0", "cluster.weight: Input should be greater than or equal to 1"),
            ('group = ""', "cluster.group: String should match")):
        with pytest.raises(ConfigError) as exc:
            load_settings(write(tmp_path, f"[cluster]\n{text}\n" + stream))
        assert said in str(exc.value), (text, str(exc.value))


def test_cluster_run_names_an_unreachable_coordination_redis(tmp_path: Path) -> None:
    from .conftest import free_port

    cfg = write(tmp_path, f'[cluster]\nenabled = true\nurl = "redis://127.0.0.1:{free_port()}"'
                '\n[metrics]\nport = 0\n[[streams]]\nid = "a"\nurl = "rtsp://127.0.0.1:9/a"\n')
    res = run_cli("run", "--config", str(cfg))
    assert res.returncode == 2, res.stderr
    assert "cluster.url: Redis at redis://127.0.0.1:" in res.stderr
    assert "is unreachable" in res.stderr and "Traceback" not in res.stderr
