"""Cluster mode: the cameras of one shared config file, spread over a group of workers.

Every worker runs ``stream-gate run`` on the same file. Membership and placement are
tooz's: its Redis driver keeps one heartbeat key per member (it expires after
``cluster.membership_timeout_s``) and its Partitioner hashes each camera id onto a
consistent-hash ring of the live members, by weight, so a member joining or leaving
moves only the cameras that must move. A camera runs only under a **lease**: a redis-py
``Lock`` (``<prefix>lease:<camera>``, as long as the membership timeout, renewed every
heartbeat). Each acquisition takes a new **epoch** from a per-camera counter
(``<prefix>epoch:<camera>``), and every entry carries ``owner`` and ``epoch``.

One thread per worker (:class:`Member`) does all of it, every ``cluster.heartbeat_s``:
heartbeat, membership, renewals; cameras no longer assigned here are handed back only
after the pipeline has stopped them and flushed their tracks; cameras assigned here are
taken as soon as their lease is free. The pipeline reads :meth:`Member.leases` once per
turn (pipeline/placement.py), and the Redis sink's fence (:meth:`Member.holds`) drops
an emission whose lease has lapsed by this process's own clock (a paused or cut-off
worker), before it reaches Redis.

Redis down: nothing can be renewed or taken. Each worker keeps its cameras (output goes
to the spool) until their leases lapse by its own clock, then stops them: a worker cut
off from Redis cannot know whether another took over. When Redis answers again the
worker re-joins (the group is re-created if Redis lost it) and cameras are placed anew;
a counter Redis lost restarts from Redis's clock in milliseconds, so epochs only grow.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.lock
import tooz
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from tooz import coordination
from tooz.drivers.redis import RedisDriver
from tooz.partitioner import Partitioner

from stream_gate.config import ClusterConfig, RedisConfig, Settings
from stream_gate.errors import StartupError
from stream_gate.log import get_logger, redact_url
from stream_gate.stages.publish.connect import Unreachable, connect, make_client
from stream_gate.types import Emission, Origin

log = get_logger(__name__)
PARTITIONS = 64  # ring points per unit of weight: even spread of a few dozen cameras
# A new epoch: the counter plus one; a counter Redis lost starts again from its clock (ms).
_EPOCH = """
if redis.call('exists', KEYS[1]) == 0 then
  local t = redis.call('time')
  redis.call('set', KEYS[1], t[1] .. string.format('%03d', math.floor(t[2] / 1000)))
end
return redis.call('incr', KEYS[1])
"""


def member_id(cfg: ClusterConfig) -> str:
    """``cluster.member_id``, else host name + pid (unique per process)."""
    return cfg.member_id or f"{socket.gethostname()}-{os.getpid()}"


def coordination_url(settings: Settings) -> str:
    return settings.cluster.url or settings.redis.url


def key_prefix(group: str) -> str:
    return f"stream-gate:{group}:"


class _Driver(RedisDriver):
    """tooz's Redis driver on a client made like the sink's (credentials, TLS files,
    timeouts from ``[redis]``), so a password never has to sit in a URL."""

    def __init__(self, member: str, client: Callable[[], redis.Redis],
                 membership_timeout_s: float) -> None:
        super().__init__(member.encode(), urlsplit("redis://"),
                         {"membership_timeout": [str(membership_timeout_s)]})
        self._new_client = client

    def _make_client(self, parsed_url: Any, options: dict[str, Any],  # type: ignore[override]
                     default_socket_timeout: int) -> redis.Redis:
        return self._new_client()


def open_coordinator(settings: Settings, member: str) -> coordination.CoordinationDriver:
    """A started tooz coordinator on the coordination Redis (not joined to any group)."""
    cfg, url = settings.redis, coordination_url(settings)
    coord = _Driver(member, lambda: cluster_client(cfg, url, settings.cluster),
                    settings.cluster.membership_timeout_s)
    coord.start(start_heart=False)
    return coord


def cluster_client(cfg: RedisConfig, url: str, cluster: ClusterConfig) -> redis.Redis:
    """A client whose calls give up within a heartbeat: a hung Redis must not hold the
    member's thread past its leases."""
    return make_client(cfg, url, timeout_s=min(cfg.connect_timeout_s, cluster.heartbeat_s))


@dataclass
class Lease:
    """One camera held by this worker: its lock, epoch and how long it surely holds."""

    lock: redis.lock.Lock
    origin: Origin
    valid_until: float  # monotonic; past it the lease may have lapsed in Redis
    handing_back: bool = False  # no longer assigned here: stop the camera, then release


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What this member knows, for metrics and logs."""

    joined: bool
    members: int
    owned: Mapping[str, int]  # camera -> epoch


class Member:
    """This worker in its group: the placement of pipeline/placement.py, run by a thread.

    ``clock``: monotonic seconds (tests pass their own)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = settings.cluster
        self.settings = settings
        self.id = member_id(self.cfg)
        self.group = self.cfg.group.encode()
        self.prefix = key_prefix(self.cfg.group)
        self.ttl = self.cfg.membership_timeout_s
        self._clock = clock
        self._lock = threading.Lock()  # _leases, _configured, _states
        self._leases: dict[str, Lease] = {}
        self._configured: list[str] = []
        self._states: Mapping[str, str] = {}  # camera -> reader state, from the loop
        self._coord: coordination.CoordinationDriver | None = None
        self._partitioner: Partitioner | None = None
        self._members = 0
        self._joined = False
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._ring: frozenset[bytes] = frozenset()  # the members the partitioner was made of
        url = coordination_url(settings)
        try:  # bad credentials or TLS stop start-up; an outage only where a spool waits
            connect(settings.redis, url).close()
        except Unreachable:
            if settings.redis.spool_dir is None:
                raise
        self._client = cluster_client(settings.redis, url, self.cfg)
        self._epoch = self._client.register_script(_EPOCH)
        self._thread = threading.Thread(target=self._run, name="cluster", daemon=True)

    # -- the pipeline's side (its own thread) ---------------------------------------

    def configure(self, stream_ids: Sequence[str]) -> None:
        with self._lock:
            self._configured = list(stream_ids)

    def leases(self) -> Mapping[str, Origin]:
        now = self._clock()
        with self._lock:
            return {sid: lease.origin for sid, lease in self._leases.items()
                    if not lease.handing_back and now < lease.valid_until}

    def running(self, states: Mapping[str, str]) -> None:
        with self._lock:
            self._states = dict(states)

    def ready(self) -> bool:
        return self._joined

    def holds(self, em: Emission) -> bool:
        """The sink's fence: ``em`` was made under a lease this worker surely still holds
        (an emission without an origin is not fenced)."""
        if em.origin is None:
            return True
        with self._lock:
            lease = self._leases.get(em.candidate.stream_id)
        return lease is not None and lease.origin == em.origin \
            and self._clock() < lease.valid_until

    def snapshot(self) -> Snapshot:
        with self._lock:
            owned = {sid: lease.origin.epoch for sid, lease in self._leases.items()}
        return Snapshot(self._joined, self._members, owned)

    # -- the member's thread ----------------------------------------------------------

    def start(self) -> None:
        log.info("cluster_member", member_id=self.id, group=self.cfg.group,
                 weight=self.cfg.weight, url=redact_url(coordination_url(self.settings)))
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Hand every lease back and leave the group (the pipeline has stopped)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            self._release(lease)
        try:
            if self._coord is not None:
                if self._joined:
                    self._coord.leave_group(self.group).get()
                self._coord.stop()
        except (tooz.ToozError, redis.RedisError) as exc:
            log.warning("cluster_leave_failed", error=redact_url(str(exc)))
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self._tick()
                if self._down_since is not None:
                    log.info("cluster_redis_up", down_s=round(started - self._down_since, 1))
                    self._down_since = None
            except (tooz.ToozError, redis.RedisError) as exc:
                self._outage(exc)
            except Exception as exc:  # the member must outlive any one failure
                log.error("cluster_tick_failed", error=redact_url(f"{type(exc).__name__}: "
                                                                  f"{exc}"))
            self._expire()
            self._stop.wait(max(0.0, self.cfg.heartbeat_s - (self._clock() - started)))

    def _outage(self, exc: BaseException) -> None:
        """Redis does not answer: logged once; re-join from scratch when it does."""
        if self._down_since is None:
            self._down_since = self._clock()
            log.error("cluster_redis_down", error=redact_url(str(exc)),
                      leases=len(self._leases), lapse_in_s=self.ttl)
        self._joined = False
        if self._coord is not None:
            with contextlib.suppress(tooz.ToozError, redis.RedisError):
                self._coord.stop()
            self._coord = None
            self._partitioner = None
            self._ring = frozenset()

    def _expire(self) -> None:
        """Leases that lapsed by this process's clock (not renewed in time) are lost."""
        now = self._clock()
        with self._lock:
            lapsed = [sid for sid, lease in self._leases.items() if now >= lease.valid_until]
            for sid in lapsed:
                lease = self._leases.pop(sid)
                log.warning("lease_lost", stream_id=sid, epoch=lease.origin.epoch,
                            why="not renewed within membership_timeout_s")

    def _tick(self) -> None:
        if self._coord is None:
            self._coord = open_coordinator(self.settings, self.id)
        self._coord.heartbeat()
        members = self._live_members()
        if self.id.encode() not in members:  # new, or dropped (paused; Redis restarted)
            self._join()
            members = self._live_members()
        self._members = len(members)
        if members != self._ring:
            self._replace_partitioner(members)
        self._renew()
        assigned = self._assigned()
        self._hand_back(assigned)
        self._take(assigned)
        self._report()

    def _live_members(self) -> frozenset[bytes]:
        """The members whose heartbeat is alive (tooz drops the others from the group)."""
        assert self._coord is not None
        try:
            return frozenset(self._coord.get_members_with_capabilities(self.group).get())
        except coordination.GroupNotCreated:  # a Redis that lost its data
            return frozenset()

    def _join(self) -> None:
        """Join the group (created if missing) with this worker's weight."""
        assert self._coord is not None
        with contextlib.suppress(coordination.GroupAlreadyExist):
            self._coord.create_group(self.group).get()
        caps = {"weight": self.cfg.weight}
        try:
            self._coord.join_group(self.group, capabilities=caps).get()
        except coordination.MemberAlreadyExist:
            self._coord.update_capabilities(self.group, caps).get()
        self._joined = True

    def _replace_partitioner(self, members: frozenset[bytes]) -> None:
        """A ring of the members alive now. The loop compares membership itself every
        tick (no tooz watchers), so the ring always matches the group just read."""
        assert self._coord is not None
        if self._partitioner is not None:
            self._partitioner.stop()
        self._partitioner = Partitioner(self._coord, self.group, partitions=PARTITIONS)
        log.info("cluster_members", member_id=self.id,
                 members=sorted(m.decode() for m in members),
                 joined=sorted(m.decode() for m in members - self._ring),
                 left=sorted(m.decode() for m in self._ring - members))
        self._ring = members

    def _assigned(self) -> set[str]:
        """The configured cameras the ring gives this worker now."""
        assert self._partitioner is not None
        with self._lock:
            configured = list(self._configured)
        return {sid for sid in configured if self._partitioner.belongs_to_self(sid)}

    def _renew(self) -> None:
        for sid, lease in list(self._leases.items()):
            t0 = self._clock()
            try:
                lease.lock.extend(self.ttl, replace_ttl=True)
            except redis.exceptions.LockError:  # expired, or taken by another worker
                with self._lock:
                    self._leases.pop(sid, None)
                log.warning("lease_lost", stream_id=sid, epoch=lease.origin.epoch,
                            why="Redis no longer has it as this worker's")
                continue
            lease.valid_until = t0 + self.ttl

    def _hand_back(self, assigned: set[str]) -> None:
        """Cameras assigned elsewhere now: the loop stops them; once stopped, released."""
        with self._lock:
            running = set(self._states)
            for sid, lease in self._leases.items():
                if sid not in assigned and not lease.handing_back:
                    lease.handing_back = True
                    log.info("lease_handing_back", stream_id=sid, epoch=lease.origin.epoch)
            done = [sid for sid, lease in self._leases.items()
                    if lease.handing_back and sid not in running]
            released = [self._leases.pop(sid) for sid in done]
        for lease in released:
            self._release(lease)

    def _release(self, lease: Lease) -> None:
        try:
            lease.lock.release()
        except redis.exceptions.LockError:
            pass  # lapsed already
        except redis.RedisError as exc:
            log.warning("lease_release_failed", error=redact_url(str(exc)))
            return
        log.info("lease_released", stream_id=self._camera(lease), epoch=lease.origin.epoch)

    def _camera(self, lease: Lease) -> str:
        name = lease.lock.name
        return str(name).removeprefix(f"{self.prefix}lease:")

    def _take(self, assigned: set[str]) -> None:
        """Leases of the cameras assigned here that no one holds (any more)."""
        for sid in sorted(assigned - set(self._leases)):
            lock = self._client.lock(f"{self.prefix}lease:{sid}", timeout=self.ttl,
                                     blocking=False, thread_local=False)
            t0 = self._clock()
            if not lock.acquire(token=f"{self.id}/{uuid.uuid4().hex[:12]}"):
                continue  # still its old owner's: handed back or lapsed soon
            epoch = int(self._epoch(keys=[f"{self.prefix}epoch:{sid}"]))
            with self._lock:
                self._leases[sid] = Lease(lock, Origin(self.id, epoch), t0 + self.ttl)
            log.info("lease_taken", stream_id=sid, epoch=epoch)

    def _report(self) -> None:
        """Each held camera's state, for ``stream-gate cluster status``."""
        with self._lock:
            rows = {sid: json.dumps({"owner": self.id, "epoch": lease.origin.epoch,
                                     "state": self._states.get(sid, "starting"),
                                     "at_ms": int(time.time() * 1000)})
                    for sid, lease in self._leases.items()}
        if rows:
            self._client.hset(f"{self.prefix}cameras", mapping=rows)  # type: ignore[arg-type]

    def collector(self, fenced: Callable[[], int]) -> Collector:
        """Prometheus series of this member (``fenced``: the sink's fenced count)."""
        return _ClusterCollector(self, fenced)


class _ClusterCollector(Collector):
    def __init__(self, member: Member, fenced: Callable[[], int]) -> None:
        self._member = member
        self._fenced = fenced

    def collect(self) -> Iterator[Any]:
        snap = self._member.snapshot()
        joined = GaugeMetricFamily("stream_gate_cluster_joined",
                                   "1 while this worker is a member of its group")
        joined.add_metric([], float(snap.joined))
        members = GaugeMetricFamily("stream_gate_cluster_members",
                                    "Live members of the group, as this worker last saw")
        members.add_metric([], float(snap.members))
        owned = GaugeMetricFamily("stream_gate_cluster_owned_cameras",
                                  "Cameras this worker holds a lease on")
        owned.add_metric([], float(len(snap.owned)))
        epoch = GaugeMetricFamily("stream_gate_cluster_lease_epoch",
                                  "Epoch of each camera this worker holds", labels=["stream"])
        for sid, e in sorted(snap.owned.items()):
            epoch.add_metric([sid], float(e))
        fenced = CounterMetricFamily("stream_gate_emissions_fenced",
                                     "Emissions dropped because their lease had lapsed")
        fenced.add_metric([], float(self._fenced()))
        yield from (joined, members, owned, epoch, fenced)


def cluster_member(settings: Settings) -> Member:
    """The member of a cluster-mode run, not started (:meth:`Member.start` once the
    pipeline can run cameras); StartupError when the coordination Redis refuses it or,
    without a spool, does not answer."""
    try:
        return Member(settings)
    except Unreachable as exc:
        raise StartupError(f"cluster.url: {exc}") from None


def camera_rows(settings: Settings, client: redis.Redis) -> Iterator[dict[str, Any]]:
    """``cluster status``: each configured camera with its lease holder, epoch, state."""
    prefix = key_prefix(settings.cluster.group)
    raw: dict[bytes, bytes] = client.hgetall(f"{prefix}cameras")  # type: ignore[assignment]
    reported = {k.decode(): json.loads(v) for k, v in raw.items()}
    for s in settings.streams:
        token: bytes | None = client.get(f"{prefix}lease:{s.id}")  # type: ignore[assignment]
        ttl_ms: int = client.pttl(f"{prefix}lease:{s.id}")
        epoch: bytes | None = client.get(f"{prefix}epoch:{s.id}")  # type: ignore[assignment]
        owner = token.decode().rsplit("/", 1)[0] if token else None
        rep = reported.get(s.id, {})
        current = owner is not None and rep.get("owner") == owner \
            and str(rep.get("epoch")) == (epoch.decode() if epoch else None)
        yield {"stream_id": s.id, "owner": owner,
               "epoch": int(epoch) if epoch and owner else None,
               "state": rep.get("state") if current else ("unowned" if owner is None
                                                          else "starting"),
               "lease_ttl_s": round(ttl_ms / 1000, 1) if owner and ttl_ms > 0 else None}


def member_rows(settings: Settings) -> list[dict[str, Any]]:
    """``cluster status``: the live members of the group with their weights."""
    coord = open_coordinator(settings, f"status-{socket.gethostname()}-{os.getpid()}")
    try:
        try:
            caps = coord.get_members_with_capabilities(settings.cluster.group.encode()).get()
        except coordination.GroupNotCreated:
            return []
        return [{"member_id": m.decode(), "weight": c.get("weight", 1)
                 if isinstance(c, dict) else 1} for m, c in sorted(caps.items())]
    finally:
        coord.stop()
