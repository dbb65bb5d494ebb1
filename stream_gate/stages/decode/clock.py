"""Media time for a stream's frames, and sampling down to the analysed rate."""

from __future__ import annotations


class Clock:
    """Media time that never goes back, across file loops and camera reconnects.

    Frames without a timestamp, or repeating the last one (broken muxers and cameras
    stamp every frame 0), are placed one frame period after the previous frame. After a
    camera's reconnect, media time resumes as far after the last frame as the wall clock
    moved meanwhile (a person who left during the outage is not "still there" in media
    time); a file's next loop follows its last frame by one period.
    """

    def __init__(self) -> None:
        self._base = 0.0
        self._last = -1.0
        self._last_raw: float | None = None
        self._period = 0.04
        self._gap = 0.0  # seconds the next segment starts after the last frame, at least

    def stamp(self, raw: float | None, period: float) -> float:
        if period > 0:
            self._period = period
        if raw is None:
            t = self._last + self._period if self._last >= 0 else 0.0
        elif raw == self._last_raw:  # a stuck timestamp: one period on, and rebase
            t = self._last + self._period
            self._base = t - raw
        else:
            if self._last_raw is None:
                step = max(self._period, self._gap)
                self._base = -raw if self._last < 0 else self._last + step - raw
                self._gap = 0.0
            elif raw < self._last_raw:  # loop restart or camera reset
                self._base = self._last + self._period - raw
            self._last_raw = raw
            t = raw + self._base
        self._last = t
        return t

    def restart(self, gap_s: float = 0.0) -> None:
        """The next raw time starts a new segment (a reopened file or camera), at least
        ``gap_s`` after the last frame (a camera's time without a frame)."""
        self._last_raw = None
        self._gap = gap_s


class Sampler:
    """Keeps frames at most every 1/fps seconds of media time."""

    def __init__(self, fps: float) -> None:
        self._period = 1.0 / fps
        self._next = 0.0

    def keep(self, t: float) -> bool:
        if t + 1e-6 < self._next:
            return False
        self._next = max(self._next + self._period, t + self._period * 0.5)
        return True
