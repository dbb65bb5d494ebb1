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

One person's crops are ranked by their quality plus two cues the model cannot see in one
crop (by default the consensus at 3, the size cue off; docs/decisions/003):
- ``size_weight`` points per doubling of the face box's area: the 112-px crop hides how
  many pixels the face had;
- ``consensus_weight`` points per percent of the crop's *agreement with the person's
  other crops*: the cosine between its signature (:func:`crop_signature`: the quality
  model's appearance embedding where it has one, as cr-fiqa-s v2 does, else the free
  :func:`appearance_signature`) and the mean signature of every crop of the track so
  far. This is CR-FIQA's class-centre proximity measured instead of predicted: the gate
  knows the track, so it knows the person's centre. A crop unlike the rest (turned
  away, blurred, occluded, misaligned, a brief track switch) ranks low; on real video
  it picks the crop the recogniser matches best far more often than the quality model
  alone.
With the consensus on, the centre moves as crops arrive, so each track keeps a small
pool of candidates (:data:`POOL`, at least ``top_k``), ranked anew on every crop;
``track_end`` ranks them against the whole track. ``improve_delta`` compares a crop with
the crops already sent, all ranked against the centre as it is now: ranks frozen when
sent would keep the first emission (ranked against the two or three crops that
confirmed the track, which agree with themselves) ahead of every later crop
(``python -m trainer evaluate-emissions``, docs/decisions/003). ``min_quality`` and the
emitted quality stay the model's score.

May import: geometry, config, types (no other stage).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.config import SelectConfig
from stream_gate.geometry import log2_area
from stream_gate.types import Candidate, Emission, EmitReason, ImageBGR, Origin, TrackEnd

POOL = 16  # candidates a track keeps while the consensus is on (at least top_k)
SIGNATURE_PX = 32  # side of the signature's grid: 1,024 numbers a crop
Signature = npt.NDArray[np.float32]


def appearance_signature(crop: ImageBGR) -> Signature:
    """A crop's layout of edges, for comparing one person's crops with each other: the
    gradient magnitude of the inner face (the 80 x 80 px inside the 112-px template's
    margins), shrunk to 32 x 32, centred and scaled to unit length. Edges rather than
    grey levels, so that a change of light moves it less than a change of pose, blur or
    alignment. About 45 us a crop on one CPU core."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)[16:96, 16:96]
    mag = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    sig = cv2.resize(mag, (SIGNATURE_PX, SIGNATURE_PX), interpolation=cv2.INTER_AREA).ravel()
    return unit_signature(sig - sig.mean())


def unit_signature(embedding: npt.NDArray[np.floating]) -> Signature:
    """A vector as a signature: flat, float32, unit length (zero stays zero)."""
    sig = np.asarray(embedding, np.float32).ravel()
    norm = float(np.linalg.norm(sig))
    out: Signature = sig / norm if norm > 0 else sig
    return out


def crop_signature(cand: Candidate) -> Signature:
    """The signature the consensus compares: the quality model's embedding of the crop
    when it gives one (a student of a recogniser, far closer to how the recogniser sees
    the face), else the crop's edges."""
    if cand.signature is not None:
        return unit_signature(cand.signature)
    return appearance_signature(cand.crop)


def agreement(signatures: npt.NDArray[np.floating], centre: npt.NDArray[np.floating]
              ) -> npt.NDArray[np.float64]:
    """Cosine between each signature (rows) and the direction of ``centre`` (the sum or
    mean of a track's signatures), in percent: the points ``consensus_weight`` scales."""
    c = np.asarray(centre, np.float64)
    norm = float(np.linalg.norm(c))
    out: npt.NDArray[np.float64] = 100.0 * (np.asarray(signatures, np.float64) @ c) / norm \
        if norm > 0 else np.zeros(len(signatures))
    return out


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
    top: list[Candidate] = field(default_factory=list)  # best first (POOL with consensus)
    emitted: set[int] = field(default_factory=set)  # frame indices of crops already sent
    sent: list[Candidate] = field(default_factory=list)  # the crops already sent
    centre: npt.NDArray[np.float64] | None = None  # sum of every crop's signature
    signature: dict[int, Signature] = field(default_factory=dict)  # of the pool's crops


def _signature_of(held: _Held, cand: Candidate) -> Signature:
    """The signature of a crop of ``held``'s track, made (and added to the centre) the
    first time it is asked for: on arrival, or, for a crop held from before the consensus
    was turned on (hot reload), when it is first ranked."""
    sig = held.signature.get(cand.frame_index)
    if sig is None:
        sig = held.signature[cand.frame_index] = crop_signature(cand)
        held.centre = sig.astype(np.float64) if held.centre is None else held.centre + sig
    return sig


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

    def rank(self, cand: Candidate, held: _Held | None = None) -> float:
        """What one person's crops are ordered by (:meth:`_ranks`, for one crop)."""
        return self._ranks([cand], held)[0]

    def _ranks(self, cands: list[Candidate], held: _Held | None) -> list[float]:
        """Quality plus ``size_weight`` points per doubling of the face box's area plus
        ``consensus_weight`` points per percent of agreement with the track's crops so
        far (``held``; none: no consensus term), for ``cands`` at once: the pool's
        agreements in one product. Plain floats: with the consensus off this runs on
        every crop for a pool of one or two."""
        keys = [c.quality for c in cands]
        if self.cfg.size_weight:
            keys = [k + self.cfg.size_weight * float(log2_area(c.box)[0])
                    for k, c in zip(keys, cands, strict=True)]
        if self.cfg.consensus_weight and held is not None and held.centre is not None \
                and cands:
            agree = agreement(np.stack([_signature_of(held, c) for c in cands]), held.centre)
            keys = [k + self.cfg.consensus_weight * float(a)
                    for k, a in zip(keys, agree, strict=True)]
        return keys

    def offer(self, cand: Candidate, confirmed: bool) -> list[Emission]:
        """Consider one scored crop of a track matched in the current frame."""
        held = self._held.setdefault(cand.track_id, _Held(first_t=cand.t))
        held.confirmed = held.confirmed or confirmed
        keep = self.cfg.top_k
        if self.cfg.consensus_weight:
            keep = max(keep, POOL)
            _signature_of(held, cand)  # every crop counts towards the centre
        if cand.quality >= self.cfg.min_quality:
            held.top.append(cand)
        keys = self._ranks(held.top, held)
        order = sorted(range(len(keys)), key=lambda i: -keys[i])  # stable: first on ties
        held.top = [held.top[i] for i in order[:keep]]
        if held.signature:  # forget the signatures of crops that left the pool (unsent)
            keep_sig = {c.frame_index for c in held.top} | held.emitted
            held.signature = {f: s for f, s in held.signature.items() if f in keep_sig}
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
            for rank, c in enumerate(held.top[: self.cfg.top_k], start=1)
            if c.frame_index not in held.emitted and self._beats_last(held, c)
        ]
        return [self._emit(held, c, rank, "track_end") for rank, c in owed]

    def _due_max_wait(self, held: _Held, t: float) -> list[Emission]:
        wait = self.cfg.max_wait_s
        if wait <= 0 or held.sent or t - held.first_t < wait:
            return []
        return [self._emit(held, c, rank, "max_wait")
                for rank, c in enumerate(held.top[: self.cfg.top_k], 1)]

    def _beats_last(self, held: _Held, cand: Candidate) -> bool:
        """Nothing sent yet, or ``cand`` outranks the best crop sent by ``improve_delta``,
        both ranked now: against the same centre, so that a consensus formed from the
        first few crops (which agree with themselves) does not keep later ones out."""
        if not held.sent:
            return True
        ranks = self._ranks([cand, *held.sent], held)
        return ranks[0] >= max(ranks[1:]) + self.cfg.improve_delta

    def _emit(self, held: _Held, cand: Candidate, rank: int, reason: EmitReason) -> Emission:
        held.emitted.add(cand.frame_index)
        held.sent.append(cand)
        return Emission(
            emit_id=self._make_id(), reason=reason, rank=rank, candidate=cand, model=self.model,
            origin=self.origin)
