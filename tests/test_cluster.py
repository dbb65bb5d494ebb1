"""Cluster mode with real parts: worker subprocesses on one shared file, a private Redis,
six loopback RTSP cameras. Kill, pause and Redis restarts, as on a site."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_gate.config import load_settings

from .cluster import Cluster, looped, one_owner_per_epoch, wait_for
from .conftest import free_port, run_cli, start_redis, start_rtsp
from .test_rtsp import _require_gstreamer

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]
CLIPS = ("intel_face-demographics-walking.mp4", "intel_face-demographics-walking-and-pause.mp4",
         "intel_classroom.mp4")
CAMERAS = [f"cam{i}" for i in range(1, 7)]
MT = 3.0  # cluster.membership_timeout_s of these tests


@pytest.fixture
def cameras(media: Callable[[str], Path], tmp_path: Path) -> Iterator[dict[str, str]]:
    """Six RTSP cameras (rtsp://127.0.0.1:PORT/camN), minutes of people walking each."""
    _require_gstreamer()
    files = {sid: looped(media(CLIPS[i % len(CLIPS)]), tmp_path / f"{sid}.mp4", 60)
             for i, sid in enumerate(CAMERAS)}
    port = free_port()
    proc = start_rtsp(port, files)
    yield {sid: f"rtsp://127.0.0.1:{port}/{sid}" for sid in CAMERAS}
    proc.kill()
    proc.wait()


@pytest.fixture
def cluster(cameras: dict[str, str], tmp_path: Path,
            private_redis: tuple[int, list[subprocess.Popen[bytes]]]) -> Iterator[Cluster]:
    port, procs = private_redis
    start_redis(port, procs, tmp_path)
    c = Cluster(tmp_path, port, cameras, key="stream_gate:cluster", membership_timeout_s=MT)
    yield c
    c.stop()


def _all_owned(c: Cluster, by: set[str] | None = None) -> dict[str, str | None] | None:
    """Each camera's owner once every camera has one (and, with ``by``, once each of
    those workers has its share: the first to start holds all until the others join)."""
    owners = c.owners()
    if not all(owners.values()) or (by is not None and set(owners.values()) != by):
        return None
    return owners


def _published_since(c: Cluster, t_ms: int, owner_not: str) -> dict[str, int]:
    """Camera -> first Redis time (ms) of an entry after ``t_ms`` from another owner."""
    first: dict[str, int] = {}
    for e in c.entries():
        if e["ms"] > t_ms and e["owner"] != owner_not:
            first.setdefault(e["stream_id"], e["ms"])
    return first


def test_kill_a_worker_its_cameras_move_and_a_new_worker_takes_only_its_share(
        cluster: Cluster) -> None:
    for name in ("w1", "w2", "w3"):
        cluster.start(name)
    owners = wait_for(lambda: _all_owned(cluster, {"w1", "w2", "w3"}), 60)
    assert owners, f"the six cameras are not spread over the three: {cluster.owners()}"
    assert wait_for(lambda: {e["stream_id"] for e in cluster.entries()} == set(CAMERAS), 60), \
        "not every camera published"

    victim = cluster.workers["w1"]
    moved = sorted(s for s, o in owners.items() if o == "w1")
    emitted_before = victim.emitted()
    t_kill = time.time()
    victim.signal(signal.SIGKILL)
    victim.proc.wait()
    emitted_before |= victim.emitted()  # what it logged up to the kill

    bound = MT + 5.0
    back = wait_for(lambda: (lambda f: f if set(moved) <= set(f) else None)(
        _published_since(cluster, int(t_kill * 1000), owner_not="w1")), bound + 5)
    assert back, f"cameras {moved} did not publish again: {cluster.owners()}"
    delays = {sid: back[sid] / 1000 - t_kill for sid in moved}
    assert max(delays.values()) <= bound, delays
    after_kill = cluster.owners()
    assert all(after_kill[s] in ("w2", "w3") for s in CAMERAS), after_kill

    entries = cluster.entries()
    ids = {e["emit_id"] for e in entries}
    assert emitted_before and emitted_before <= ids, "an entry the dead worker emitted is gone"

    cluster.start("w4")
    joined = wait_for(lambda: (lambda o: o if "w4" in o.values() and all(o.values())
                               else None)(cluster.owners()), 60)
    assert joined, f"w4 took no camera: {cluster.owners()}"
    time.sleep(2 * MT)  # long enough for any further (wrong) move to show
    final = cluster.owners()
    changed = {s for s in CAMERAS if final[s] != after_kill[s]}
    assert changed and all(final[s] == "w4" for s in changed), (after_kill, final)
    assert wait_for(lambda: any(e["owner"] == "w4" for e in cluster.entries()), 30)
    assert not one_owner_per_epoch(cluster.entries())


def test_a_paused_worker_stops_its_cameras_and_never_publishes_its_old_epoch_late(
        cluster: Cluster) -> None:
    for name in ("w1", "w2"):
        cluster.start(name)
    owners = wait_for(lambda: _all_owned(cluster, {"w1", "w2"}), 60)
    assert owners, cluster.owners()
    paused = sorted(s for s, o in owners.items() if o == "w1")
    assert paused
    assert wait_for(lambda: {e["stream_id"] for e in cluster.entries()
                             if e["owner"] == "w1"} == set(paused), 60)
    old = {(e["stream_id"], e["epoch"]) for e in cluster.entries() if e["owner"] == "w1"}

    w1 = cluster.workers["w1"]
    w1.signal(signal.SIGSTOP)
    taken = wait_for(lambda: (lambda o: o if all(o[s] == "w2" for s in paused) else None)(
        cluster.owners()), MT + 10)
    assert taken, cluster.owners()
    t_taken = time.time()
    time.sleep(1.0)
    w1.signal(signal.SIGCONT)
    assert wait_for(lambda: w1.events("lease_lost"), 10), "w1 did not notice its lost leases"
    time.sleep(3.0)  # it resumes where it stopped: any late publishing shows now

    late = [e for e in cluster.entries()
            if (e["stream_id"], e["epoch"]) in old and e["ms"] > t_taken * 1000]
    assert not late, late
    removed = {e["stream_id"] for e in w1.events("stream_removed")}
    assert set(paused) <= removed  # it stopped them (and flushed their tracks)
    assert not one_owner_per_epoch(cluster.entries())
    # It is back in the group: the cameras the ring gives it return, under new epochs.
    assert wait_for(lambda: "w1" in cluster.owners().values(), 20)


def test_redis_restart_every_camera_owned_again_and_nothing_lost_from_the_spools(
        cluster: Cluster, private_redis: tuple[int, list[subprocess.Popen[bytes]]],
        tmp_path: Path) -> None:
    port, procs = private_redis
    # Leases twice as long as the other tests' and every improvement emitted: the
    # workers keep their cameras (and emit) for seconds into the outage, so the spools
    # surely have something to keep.
    lease_s = 2 * MT
    for name in ("w1", "w2"):
        cluster.start(name, STREAM_GATE__CLUSTER__MEMBERSHIP_TIMEOUT_S=str(lease_s),
                      STREAM_GATE__SELECT__IMPROVE_DELTA="0")
    assert wait_for(lambda: _all_owned(cluster), 60)
    assert wait_for(lambda: {e["stream_id"] for e in cluster.entries()} == set(CAMERAS), 60)
    epochs_before = {e["epoch"] for e in cluster.entries()}

    procs[-1].kill()  # Redis dies, losing everything (no persistence)
    procs[-1].wait()
    t_down = time.time()
    time.sleep(lease_s + 2)  # past the leases: the workers stop their cameras
    start_redis(port, procs, tmp_path)
    t_up = time.time()

    owned = wait_for(lambda: _all_owned(cluster), 30)
    assert owned, f"not every camera owned again: {cluster.owners()}"
    recovery_s = time.time() - t_up
    assert recovery_s < 20

    during = set()
    for w in cluster.workers.values():
        during |= {e["emit_id"] for e in w.events("emitted")
                   if t_down + 0.5 < _ts(e["timestamp"]) < t_up}
    assert during, "no worker emitted during the outage: nothing to check"
    # What the workers emitted while Redis was away waited in their spools and is in
    # Redis now.
    def published() -> set[str]:
        return {e["emit_id"] for e in cluster.entries()}
    assert wait_for(lambda: during <= published(), 30), \
        f"entries emitted during the outage are missing: {sorted(during - published())}"
    new = [e for e in cluster.entries() if e["ms"] > t_up * 1000]
    assert wait_for(lambda: [e for e in cluster.entries() if e["ms"] > t_up * 1000], 30)
    assert all(e["epoch"] > max(epochs_before) for e in new if e["epoch"] not in epochs_before)
    assert not one_owner_per_epoch(cluster.entries())


def _ts(iso: str) -> float:
    """A log timestamp (ISO 8601, UTC) in Unix seconds."""
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_reloaded_file_moves_cameras_across_the_group_status_and_metrics_show_it(
        cluster: Cluster, cameras: dict[str, str]) -> None:
    text = cluster.config.read_text()
    head, _, _ = text.partition("[[streams]]")
    def streams(ids: list[str]) -> str:
        return "".join(f'[[streams]]\nid = "{s}"\nurl = "{cameras[s]}"\nfps = 4.0\n\n'
                       for s in ids)
    cluster.config.write_text(head + streams(CAMERAS[:4]))
    metrics_port = free_port()
    cluster.start("w1", STREAM_GATE__METRICS__PORT=str(metrics_port))
    cluster.start("w2")
    cluster.settings = load_settings(cluster.config)
    assert wait_for(lambda: _all_owned(cluster, {"w1", "w2"}), 60), cluster.owners()

    # The same edit reaches every worker (a ConfigMap update, say): cam1 leaves, 5-6 join.
    cluster.config.write_text(head + streams(CAMERAS[1:]))
    cluster.settings = load_settings(cluster.config)
    owners = wait_for(lambda: _all_owned(cluster, {"w1", "w2"}), 30)
    assert owners and set(owners) == set(CAMERAS[1:]), cluster.owners()
    assert wait_for(lambda: cluster.client.get("stream-gate:test:lease:cam1") is None, 10)

    def status_agrees() -> dict[str, list[str]] | None:
        """The status table's rows once they name the owners Redis holds at that moment
        (on a loaded machine a lease may still move after the first balanced view)."""
        res = run_cli("cluster", "status", "--config", str(cluster.config))
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0] == "group test: 2 member(s)"
        rows = {ln.split()[0]: ln.split() for ln in lines if re.match(r"cam\d ", ln)}
        assert set(rows) == set(CAMERAS[1:])
        now = cluster.owners()
        return rows if all(r[1] == now[s] for s, r in rows.items()) else None
    rows = wait_for(status_agrees, 20)
    assert rows, f"cluster status never agreed with the leases: {cluster.owners()}"
    assert all(int(row[2]) > 0 for row in rows.values())  # every camera has an epoch
    assert wait_for(lambda: all(r["state"] == "live" for r in json.loads(run_cli(
        "cluster", "status", "--config", str(cluster.config), "--json").stdout)["cameras"]),
        20)

    def metrics_agree() -> str | None:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        mine = sum(o == "w1" for o in cluster.owners().values())
        return text if f"stream_gate_cluster_owned_cameras {float(mine)}" in text else None
    text = wait_for(metrics_agree, 10)
    assert text, "w1's metrics never showed the cameras it holds"
    assert "stream_gate_cluster_members 2.0" in text
    assert "stream_gate_cluster_joined 1.0" in text
    ready = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz")
    assert ready.status == 200

    cluster.workers["w2"].signal(signal.SIGTERM)  # a clean leave: no timeout to wait
    assert cluster.workers["w2"].proc.wait(30) == 0
    assert wait_for(lambda: set(cluster.owners().values()) == {"w1"}, 10), cluster.owners()
