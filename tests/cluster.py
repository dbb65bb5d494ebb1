"""A cluster on one machine for tests and scripts/cluster-failover: a private Redis, RTSP
cameras on loopback (one GStreamer server, long looped clips) and `stream-gate run`
workers as subprocesses on one shared config file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import redis

from stream_gate.config import load_settings
from stream_gate.service.cluster import camera_rows

ROOT = Path(__file__).resolve().parents[1]


def looped(src: Path, dst: Path, times: int) -> Path:
    """``src`` (H.264 in MP4) played ``times`` over in one file, remuxed (no re-encode):
    a camera that does not end during a test."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe, p.duration or 0)
                   for p in inp.demux(vin) if p.size and p.pts is not None]
        first = packets[0][1]
        span = max(pts + d for _, pts, _, _, d in packets) - first
        for k in range(times):
            for data, pts, dts, key, _ in packets:
                pkt = av.Packet(data)
                pkt.pts, pkt.dts = pts + k * span, (dts if dts is not None else pts) + k * span
                pkt.is_keyframe = key
                pkt.time_base = vin.time_base
                pkt.stream = vout
                out.mux(pkt)
    return dst


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The worker's log lines (JSON), optionally only those of one event."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and (event is None or rec.get("event") == event):
                out.append(rec)
        return out

    def emitted(self) -> set[str]:
        return {e["emit_id"] for e in self.events("emitted")}

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)


class Cluster:
    """Workers on one config file (``config``), against the Redis at ``port``."""

    def __init__(self, tmp: Path, port: int, cameras: dict[str, str], key: str,
                 heartbeat_s: float = 0.5, membership_timeout_s: float = 3.0,
                 fps: float = 4.0, group: str = "test") -> None:
        self.tmp = tmp
        self.key = key
        self.group = group
        self.membership_timeout_s = membership_timeout_s
        self.config = tmp / "cameras.toml"
        streams = "".join(f'[[streams]]\nid = "{sid}"\nurl = "{url}"\nfps = {fps}\n\n'
                          for sid, url in cameras.items())
        self.config.write_text(f"""
[redis]
url = "redis://127.0.0.1:{port}/0"
key = "{key}"
connect_timeout_s = 1.0
[cluster]
enabled = true
group = "{group}"
heartbeat_s = {heartbeat_s}
membership_timeout_s = {membership_timeout_s}
[decode]
open_timeout_s = 3
read_timeout_s = 3
reconnect_max_s = 2
[detect]
max_side = 480
[select]
policy = "improving"
improve_delta = 2.0
[metrics]
port = 0

{streams}""")
        self.settings = load_settings(self.config)
        self.client = redis.Redis(port=port, socket_timeout=2)
        self.workers: dict[str, Worker] = {}

    def start(self, name: str, **env: str) -> Worker:
        """A worker ``name`` (its member id), with its own spool folder."""
        log = self.tmp / f"{name}.log"
        spool = self.tmp / f"spool-{name}"
        full_env = {**os.environ, "STREAM_GATE__CLUSTER__MEMBER_ID": name,
                    "STREAM_GATE__REDIS__SPOOL_DIR": str(spool), **env}
        with log.open("wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stream_gate.cli", "run", "--config", str(self.config)],
                cwd=ROOT, env=full_env, stdout=f, stderr=subprocess.STDOUT)
        self.workers[name] = Worker(name, proc, log)
        return self.workers[name]

    def owners(self) -> dict[str, str | None]:
        """Each camera's lease holder now (the ``cluster status`` view)."""
        return {r["stream_id"]: r["owner"] for r in camera_rows(self.settings, self.client)}

    def entries(self) -> list[dict[str, Any]]:
        """Every published entry: Redis's time (ms, from its id) and the fields that say
        who made it."""
        out = []
        for entry_id, f in self.client.xrange(self.key):
            ms = int(entry_id.split(b"-")[0])
            out.append({"ms": ms, "stream_id": f[b"stream_id"].decode(),
                        "owner": f.get(b"owner", b"").decode(),
                        "epoch": int(f.get(b"epoch", b"0")), "emit_id": f[b"emit_id"].decode()})
        return out

    def stop(self) -> None:
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.proc.terminate()
        for w in self.workers.values():
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


def wait_for(check: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    """Poll ``check`` until it returns something true; that value, or None at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return None


def one_owner_per_epoch(entries: list[dict[str, Any]]) -> dict[tuple[str, int], set[str]]:
    """(camera, epoch) pairs published by more than one owner (empty: fencing held)."""
    seen: dict[tuple[str, int], set[str]] = {}
    for e in entries:
        seen.setdefault((e["stream_id"], e["epoch"]), set()).add(e["owner"])
    return {k: v for k, v in seen.items() if len(v) > 1}
