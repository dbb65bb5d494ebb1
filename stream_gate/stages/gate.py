"""Gate: cheap geometric checks and a per-track rate cap, before any pixel work.

Faces that no recogniser could use (weak detection, eyes too close together, turned too
far) are not aligned or scored; nor is a track scored more often than
``score.max_per_track_hz`` (0 = every frame) in media time.

May import: geometry, config, types (no other stage).
"""

from __future__ import annotations

from stream_gate.config import ScoreConfig
from stream_gate.geometry import eye_distance, yaw_estimate
from stream_gate.types import TrackedFace


def gate_reason(face: TrackedFace, cfg: ScoreConfig) -> str | None:
    """Why a face fails the cheap gates, or None when it should be scored."""
    if face.score < cfg.min_det_score:
        return "det_score"
    if eye_distance(face.landmarks) < cfg.min_eye_px:
        return "eye_distance"
    if abs(yaw_estimate(face.landmarks)) > cfg.max_yaw_deg:
        return "yaw"
    return None


class Gate:
    """One stream's gates: the thresholds in force and each track's last scoring time."""

    def __init__(self, cfg: ScoreConfig) -> None:
        self.cfg = cfg
        self._last_scored: dict[int, float] = {}  # track -> media time of its last scoring

    def reconfigure(self, cfg: ScoreConfig) -> None:
        """New thresholds (hot reload); tracks keep their rate-cap clocks."""
        self.cfg = cfg

    def check(self, face: TrackedFace, t: float) -> str | None:
        """None when the face is to be scored now; else why not (a gate, or ``capped``)."""
        reason = gate_reason(face, self.cfg)
        if reason is not None:
            return reason
        hz = self.cfg.max_per_track_hz
        if hz and t - self._last_scored.get(face.track_id, -1e9) < 1.0 / hz - 1e-6:
            return "capped"
        self._last_scored[face.track_id] = t
        return None

    def forget(self, track_id: int) -> None:
        """The track ended."""
        self._last_scored.pop(track_id, None)


def build_gate(cfg: ScoreConfig) -> Gate:
    """The gates of one stream with its (overridden) score settings."""
    return Gate(cfg)
