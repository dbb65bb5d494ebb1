"""Select: per track, keep the top-K crops and decide when to emit them.

Policies (``select.policy``):
- ``track_end``: hold the best crops and emit them when the track ends.
- ``improving``: emit the best crop as soon as the track is confirmed and its score
  reaches ``min_quality``; emit again only when a crop beats the last emitted one by
  ``improve_delta`` points.
Both honour ``max_wait_s`` (0 = off): a confirmed person is never held longer than this
after first being seen; their current top-K is emitted with reason ``max_wait``.

At track end, the held crops not yet emitted are sent if nothing was emitted before, or
if they beat the last emission by ``improve_delta``. Crops below ``min_quality`` are
never emitted; tracks that never got confirmed emit nothing.

One person's crops are ranked by their quality plus ``size_weight`` points per doubling
of the face box's area (0 by default: quality alone): the 112-px crop hides how many
pixels the face had, and on real video the two together pick better than either
(docs/decisions/003). ``improve_delta`` compares these ranks; ``min_quality`` and the
emitted quality stay the model's score.

May import: geometry, config, types (no other stage).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from stream_gate.config import SelectConfig
from stream_gate.geometry import log2_area
from stream_gate.types import Candidate, Emission, EmitReason, Origin, TrackEnd


def new_emit_id() -> str:
    return uuid.uuid4().hex


def build_selector(cfg: SelectConfig, model: str, origin: Origin | None = None) -> Selector:
    """One stream's selector with its (overridden) select settings; ``model`` is the
    quality model id its emissions carry, ``origin`` the lease they were made under
    (cluster mode)."""
    return Selector(cfg, model, origin=origin)


@dataclass
class _Held:
    first_t: float
    confirmed: bool = False
    top: list[Candidate] = field(default_factory=list)
    emitted: set[int] = field(default_factory=set)  # frame indices of crops already sent
    last_emitted: float | None = None  # the rank (:meth:`Selector.rank`) of the best sent


class Selector:
    """Selection state of one stream. Feed candidates in frame order."""

    def __init__(
        self,
        cfg: SelectConfig,
        model: str,
        make_id: Callable[[], str] = new_emit_id,
        origin: Origin | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.origin = origin
        self._make_id = make_id
        self._held: dict[int, _Held] = {}

    def reconfigure(self, cfg: SelectConfig) -> None:
        """New policy and thresholds (hot reload); held crops stay and follow them."""
        self.cfg = cfg

    @property
    def held_tracks(self) -> int:
        return len(self._held)

    def rank(self, cand: Candidate) -> float:
        """What one person's crops are ordered by: quality plus ``size_weight`` points
        per doubling of the face box's area."""
        if self.cfg.size_weight == 0:
            return cand.quality
        return cand.quality + self.cfg.size_weight * float(log2_area(cand.box)[0])

    def offer(self, cand: Candidate, confirmed: bool) -> list[Emission]:
        """Consider one scored crop of a track matched in the current frame."""
        held = self._held.setdefault(cand.track_id, _Held(first_t=cand.t))
        held.confirmed = held.confirmed or confirmed
        if cand.quality >= self.cfg.min_quality:
            held.top.append(cand)
            held.top.sort(key=lambda c: -self.rank(c))
            del held.top[self.cfg.top_k :]
        if not held.confirmed:
            return []
        out = self._due_max_wait(held, cand.t)
        if self.cfg.policy == "improving" and held.top and not out:
            best = held.top[0]
            if best.frame_index not in held.emitted and self._beats_last(held, best):
                out = [self._emit(held, best, 1, "improving")]
        return out

    def tick(self, t: float) -> list[Emission]:
        """Apply ``max_wait_s`` to every held track at media time ``t``."""
        out: list[Emission] = []
        for held in self._held.values():
            if held.confirmed:
                out += self._due_max_wait(held, t)
        return out

    def end(self, track: TrackEnd) -> list[Emission]:
        """The track ended: emit what is still owed and forget it."""
        held = self._held.pop(track.track_id, None)
        if held is None or not (held.confirmed or track.confirmed):
            return []
        owed = [
            (rank, c)
            for rank, c in enumerate(held.top, start=1)
            if c.frame_index not in held.emitted and self._beats_last(held, c)
        ]
        return [self._emit(held, c, rank, "track_end") for rank, c in owed]

    def _due_max_wait(self, held: _Held, t: float) -> list[Emission]:
        wait = self.cfg.max_wait_s
        if wait <= 0 or held.last_emitted is not None or t - held.first_t < wait:
            return []
        return [self._emit(held, c, rank, "max_wait") for rank, c in enumerate(held.top, 1)]

    def _beats_last(self, held: _Held, cand: Candidate) -> bool:
        return held.last_emitted is None or \
            self.rank(cand) >= held.last_emitted + self.cfg.improve_delta

    def _emit(self, held: _Held, cand: Candidate, rank: int, reason: EmitReason) -> Emission:
        held.emitted.add(cand.frame_index)
        key = self.rank(cand)
        held.last_emitted = key if held.last_emitted is None else max(held.last_emitted, key)
        return Emission(
            emit_id=self._make_id(), reason=reason, rank=rank, candidate=cand, model=self.model,
            origin=self.origin)
