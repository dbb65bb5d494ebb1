"""Per-stream state: each stream's reader, gates and selector, from add to remove.

The pipeline owns it all here; the track stage keeps its own per-stream tracking state
between :meth:`Streams.add` (``track.open``) and :meth:`Streams.remove` (``track.close``),
so every stream's state is created, held and changed in one place each. A hot reload
(:meth:`Streams.apply`) changes thresholds and policies through the stages' own
``reconfigure`` methods, stops the streams that left the config and starts new ones.
In cluster mode a stream also carries the lease it runs under (:class:`Origin`); a new
lease of the same camera restarts it, so no track spans two epochs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from stream_gate.config import Settings
from stream_gate.errors import StartupError
from stream_gate.log import get_logger
from stream_gate.stages.decode import FrameQueue, Reader, Source, build_reader
from stream_gate.stages.gate import Gate, build_gate
from stream_gate.stages.select import Selector, build_selector
from stream_gate.stages.track import TrackStage
from stream_gate.types import Emission, Origin, TrackEnd

log = get_logger(__name__)


@dataclass
class StreamState:
    """One stream: where its frames come from and the per-stream stages after tracking.

    ``quiet_s``: for a live camera, how long without a frame ends its tracks (a person
    who leaves while the camera is down is not held until it comes back); None for files.
    """

    url: str
    source: Source
    stop: threading.Event  # this stream's own, so it can leave alone
    reader: Reader
    gate: Gate
    selector: Selector
    quiet_s: float | None = None
    origin: Origin | None = None  # the lease it runs under (cluster mode)
    last_frame_ms: int | None = None  # wall-clock stamp of the last frame processed
    quiet: bool = False  # its tracks were ended for quiet; until the next frame

    def saw(self, frame_ms: int) -> None:
        """A frame of this stream was processed."""
        self.last_frame_ms = frame_ms
        self.quiet = False

    def gone_quiet(self, now_ms: float) -> bool:
        """A live camera that has delivered nothing for ``quiet_s`` (queue empty too)."""
        if self.quiet_s is None or self.quiet or self.last_frame_ms is None:
            return False
        return now_ms - self.last_frame_ms > self.quiet_s * 1000 and len(self.queue) == 0

    @property
    def queue(self) -> FrameQueue:
        return self.reader.queue

    @property
    def fps(self) -> float:
        return self.source.fps

    def ends(self, ends: list[TrackEnd]) -> list[Emission]:
        """Tracks that ended: what their selector still owes, and their gate clocks gone."""
        out: list[Emission] = []
        for end in ends:
            self.gate.forget(end.track_id)
            out += self.selector.end(end)
            if end.confirmed:
                log.debug("track_end", stream_id=self.source.stream_id, track_id=end.track_id)
        return out


class Streams(Mapping[str, StreamState]):
    """The running streams by id."""

    def __init__(self, settings: Settings, track: TrackStage, model: str,
                 origins: Mapping[str, Origin] | None = None) -> None:
        """``origins``: cluster mode, the streams this process holds leases on (only
        those run); None runs every stream of ``settings``."""
        self.settings = settings
        self.track = track
        self.model = model  # the quality model id emissions carry
        self._streams: dict[str, StreamState] = {}
        for s in settings.streams:
            if origins is None or s.id in origins:
                self.add(s.id, None if origins is None else origins[s.id])

    def __getitem__(self, sid: str) -> StreamState:
        return self._streams[sid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._streams)

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, sid: str, origin: Origin | None = None) -> StreamState:
        """A stream of the current settings, tracked from now on (its reader not started)."""
        cfg = self.settings.stream(sid)
        source = Source.parse(sid, cfg.url, cfg.fps)
        stop = threading.Event()
        # One frame period past the tracker's max_age_s: a slow camera's frames are not gaps.
        quiet_s = self.settings.track.max_age_s + 1.0 / cfg.fps \
            if source.kind == "live" else None
        st = StreamState(cfg.url, source, stop, build_reader(source, self.settings.decode, stop),
                         build_gate(self.settings.score_for(sid)),
                         build_selector(self.settings.select_for(sid), self.model, origin),
                         quiet_s, origin)
        self._streams[sid] = st
        self.track.open(sid)
        return st

    def end_quiet(self, now_ms: float) -> list[Emission]:
        """End the tracks of every live camera that went quiet; what they owed."""
        owed: list[Emission] = []
        for sid, st in self._streams.items():
            if st.gone_quiet(now_ms):
                st.quiet = True
                ends = self.track.reset(sid)
                log.info("stream_quiet", stream_id=sid, quiet_s=round(st.quiet_s or 0.0, 2),
                         tracks_ended=sum(e.confirmed for e in ends))
                owed += st.ends(ends)
        return owed

    def remove(self, sid: str, join_timeout: float = 5.0) -> tuple[StreamState, list[Emission]]:
        """Stop a stream's reader (waiting up to ``join_timeout``) and end its tracks;
        returns the stream and what its selector still owed."""
        st = self._streams.pop(sid)
        st.stop.set()
        st.reader.join(timeout=join_timeout)
        return st, st.ends(self.track.close(sid))

    def apply(self, settings: Settings, origins: Mapping[str, Origin] | None = None
              ) -> tuple[list[tuple[str, StreamState]], list[Emission]]:
        """Take a reloaded config (or, in cluster mode, a new set of leases: ``origins``)
        without touching unchanged streams.

        Thresholds and policies (``score``, ``select``, per-stream overrides) apply at once
        and tracks keep what they hold; streams that left the config (or whose url/fps
        changed, or whose lease did) are stopped and their tracks flushed; new ones
        start. Detector, decode and tracker settings need a restart. Returns the removed
        streams and the emissions their tracks still owed.
        """
        wanted = {s.id: s for s in settings.streams if origins is None or s.id in origins}
        removed: list[tuple[str, StreamState]] = []
        owed: list[Emission] = []
        for sid in list(self._streams):
            cfg, st = wanted.get(sid), self._streams[sid]
            origin = None if origins is None else origins.get(sid)
            if cfg is None or (cfg.url, cfg.fps, origin) != (st.url, st.source.fps, st.origin):
                gone, ems = self.remove(sid)
                removed.append((sid, gone))
                owed += ems
                log.info("stream_removed", stream_id=sid)
        self.settings = settings
        for sid in wanted:
            if sid in self._streams:
                self._streams[sid].gate.reconfigure(settings.score_for(sid))
                self._streams[sid].selector.reconfigure(settings.select_for(sid))
                continue
            st = self.add(sid, None if origins is None else origins[sid])
            try:
                st.source.check()
            except StartupError as exc:
                log.error("stream_rejected", stream_id=sid, error=str(exc))
                self._streams.pop(sid)
                self.track.close(sid)
                continue
            st.reader.start()
            log.info("stream_added", stream_id=sid,
                     epoch=None if st.origin is None else st.origin.epoch)
        return removed, owed
