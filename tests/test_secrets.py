"""A planted password never reaches the output of a failing start-up, doctor or bench."""

from __future__ import annotations

from pathlib import Path

from .conftest import free_port, run_cli

SECRET = "Pl4nted-s3cret"


def _check(res_out: str) -> None:
    assert SECRET not in res_out, res_out


def test_a_mistyped_redis_scheme_does_not_echo_the_password(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[redis]\nurl = "reddis://:{SECRET}@127.0.0.1:6379/0"\n'
                   '[[streams]]\nid = "cam"\nurl = "rtsp://127.0.0.1:9/cam"\n')
    for cmd in (["run", "--config", str(cfg)], ["doctor", "--config", str(cfg)]):
        res = run_cli(*cmd, timeout=60)
        assert res.returncode in (1, 2)
        assert "redis.url" in res.stdout + res.stderr
        _check(res.stdout + res.stderr)


def test_bad_values_beside_a_camera_password_and_a_dead_camera_in_bench(tmp_path: Path
                                                                        ) -> None:
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/cam"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[decode]\nopen_timeout_s = 1\n[[streams]]\nid = "cam"\nurl = "{url}"\n'
                   'fps = "fast"\n')
    res = run_cli("run", "--config", str(cfg), timeout=60)
    assert res.returncode == 2 and "streams.0.fps" in res.stderr
    _check(res.stdout + res.stderr)
    res = run_cli("--log-level", "warning", "bench", "--source", url, "--variants",
                  "decode-only", timeout=120)
    assert res.returncode == 2 and "cannot decode" in res.stderr, res.stderr
    _check(res.stdout + res.stderr)
