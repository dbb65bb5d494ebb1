"""Debug outputs never stop the gate: an unwritable --out / --dump-scored is a start-up
error naming the key, a full disk later is logged and skipped; an early SIGHUP is kept."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_gate.stages.publish import DirectorySink

from .conftest import REDIS_URL, run_cli, spawn_cli
from .test_publish import emission


def _mount(folder: Path, options: str) -> None:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr!r}")


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    made: list[Path] = []

    def mount(name: str, options: str) -> Path:
        made.append(tmp_path / name)
        _mount(made[-1], options)
        return made[-1]

    yield mount
    for m in made:
        subprocess.run(["umount", "-l", str(m)], check=False)


@pytest.mark.redis
def test_read_only_outputs_stop_start_up_with_the_key_named(
        mounts: Callable[[str, str], Path], media: Callable[[str], Path],
        tmp_path: Path) -> None:
    ro = mounts("ro", "ro,size=64k")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[redis]\nurl = "{REDIS_URL}"\n[metrics]\nport = 0\n[[streams]]\n'
                   f'id = "c"\nurl = "{media("intel_face-demographics-walking.mp4")}"\n')
    for flag, key in (("--out", "output.dir"), ("--dump-scored", "output.dump_scored")):
        res = run_cli("run", "--config", str(cfg), flag, str(ro / "crops"), timeout=120)
        assert res.returncode == 2, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("stream-gate: error:")]
        assert len(lines) == 1 and f"{key}: cannot write to" in lines[0], res.stderr


def test_a_full_output_disk_is_skipped_not_fatal(mounts: Callable[[str, str], Path]) -> None:
    disk = mounts("full", "size=64k")
    sink = DirectorySink(disk / "crops")
    sink.publish([emission(i) for i in range(80)])  # more than 64 kB of JPEG + JSON
    assert 0 < sink.written < 80 and sink.failed == 80 - sink.written
    assert not [p for p in (disk / "crops").glob("*.jpg")
                if not p.with_suffix(".json").exists()]  # no half pairs


@pytest.mark.redis
@pytest.mark.slow
def test_a_sighup_while_starting_is_kept_not_fatal(media: Callable[[str], Path],
                                                   tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[redis]\nurl = "{REDIS_URL}"\n[metrics]\nport = 0\n[[streams]]\n'
                   f'id = "c"\nurl = "loop://{media("intel_face-demographics-walking.mp4")}"\n')
    proc = spawn_cli("run", "--config", str(cfg))
    time.sleep(2.5)  # imports done, models loading
    proc.send_signal(signal.SIGHUP)
    time.sleep(4.0)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert alive, err
    assert proc.returncode == 0, err
    assert '"event": "config_reloaded"' in err and '"trigger": "sighup"' in err
