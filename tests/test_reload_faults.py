"""Hot reload never ends the process: a bad byte, a file caught mid-rewrite, a config
start-up would refuse, an apply that fails (the file watcher on a real file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_gate.config import Settings, load_settings
from stream_gate.errors import ConfigError
from stream_gate.service.reload import ConfigReloader

GOOD = """
[select]
min_quality = {q}
[[streams]]
id = "cam"
url = "rtsp://127.0.0.1:9/cam"
"""


def _reloader(path: Path, applied: list[Settings]) -> ConfigReloader:
    return ConfigReloader(path, applied.append, check_every_s=0.0)


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_latin1_byte_is_one_line_at_start_up_and_rejected_live(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(("# Entrée\n" + GOOD.format(q=10)).encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 6") as err:
        load_settings(cfg)
    assert len(str(err.value).splitlines()) == 1
    cfg.write_text(GOOD.format(q=10))
    applied: list[Settings] = []
    reloader = _reloader(cfg, applied)
    cfg.write_bytes(("# Entrée\n" + GOOD.format(q=20)).encode("latin-1"))
    _touch_later(cfg)
    reloader.poll()  # must not raise
    assert applied == []
    cfg.write_text(GOOD.format(q=30))
    _touch_later(cfg)
    reloader.poll()
    assert [s.select.min_quality for s in applied] == [30]


def test_an_empty_or_streamless_file_is_not_applied(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD.format(q=10))
    applied: list[Settings] = []
    reloader = _reloader(cfg, applied)
    cfg.write_text("")  # `> file`: truncated, not yet written
    _touch_later(cfg)
    reloader.poll()
    cfg.write_text("[select]\nmin_quality = 50\n")  # valid TOML, but no camera at all
    _touch_later(cfg)
    reloader.poll()
    assert applied == []
    cfg.write_text(GOOD.format(q=40))
    _touch_later(cfg)
    reloader.poll()
    assert [s.select.min_quality for s in applied] == [40]


def test_a_failing_apply_is_logged_not_raised(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD.format(q=10))

    def boom(_settings: Settings) -> None:
        raise RuntimeError("stage refused")

    reloader = ConfigReloader(cfg, boom, check_every_s=0.0)
    cfg.write_text(GOOD.format(q=20))
    _touch_later(cfg)
    reloader.poll()  # logged as config_apply_failed; the loop goes on
