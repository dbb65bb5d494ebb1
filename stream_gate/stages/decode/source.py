"""Sources: what a stream's URL means (file, ``loop://`` file, live camera) and how PyAV
opens it (RTSP transport, open/read timeouts, optional NVDEC)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import av.error
from av.codec.hwaccel import HWAccel, hwdevices_available

from stream_gate.config import DecodeConfig
from stream_gate.errors import SourceError
from stream_gate.log import get_logger

SourceKind = Literal["file", "loop", "live"]
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a stream's frames come from: ``target`` is what PyAV opens."""

    stream_id: str
    kind: SourceKind
    target: str
    fps: float

    @staticmethod
    def parse(stream_id: str, url: str, fps: float) -> Source:
        if url.startswith("loop://"):
            return Source(stream_id, "loop", url.removeprefix("loop://"), fps)
        if url.startswith("file://"):
            return Source(stream_id, "file", url.removeprefix("file://"), fps)
        if "://" in url:
            return Source(stream_id, "live", url, fps)
        return Source(stream_id, "file", url, fps)

    @property
    def is_live(self) -> bool:
        return self.kind != "file"

    def check(self) -> None:
        """Fail fast for a local file that is missing or is not a readable video.

        Live cameras are not probed here: a camera that is down at start-up is retried
        at run time and must not stop the other streams.
        """
        if self.kind == "live":
            return
        path = Path(self.target)
        if not path.is_file():
            raise SourceError(f"stream {self.stream_id!r}: video file not found: {path}")
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise SourceError(
                        f"stream {self.stream_id!r}: {path} has no video stream"
                    )
        except av.error.FFmpegError as exc:
            raise SourceError(
                f"stream {self.stream_id!r}: cannot read video {path}: {exc.strerror or exc}"
            ) from None


class _HwState:
    """Whether hardware decoding failed in this process (then it is not tried again)."""

    failed: str | None = None
    lock = threading.Lock()


def hwaccel_error() -> str | None:
    """Why hardware decoding was given up in this process, or None if it was not."""
    return _HwState.failed


def nominal_rate(stream: Any) -> float:
    """A video stream's frame rate (0 if unknown): FFmpeg's best guess first; the average
    rate is garbage where timestamps are (every frame stamped 0: 1125 fps for 25)."""
    rate = stream.guessed_rate or stream.average_rate
    return float(rate) if rate else 0.0


def open_source(source: Source, cfg: DecodeConfig) -> Any:
    """Open a source with PyAV: RTSP transport and the open/read timeouts applied.

    The one place a source is opened (the readers, ``doctor`` and ``bench`` share it).
    With ``decode.hwaccel = "cuda"`` the video is decoded on the GPU (NVDEC) where the
    FFmpeg build and the machine offer it; FFmpeg falls back to software for streams
    NVDEC cannot decode, and if no CUDA device can be opened at all, decoding falls back
    to the CPU for the rest of the process (logged once).
    """
    options: dict[str, str] = {}
    if source.target.startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = cfg.rtsp_transport
    timeout = (cfg.open_timeout_s, cfg.read_timeout_s)
    if cfg.hwaccel != "none" and _HwState.failed is None:
        try:
            if cfg.hwaccel not in hwdevices_available():
                raise av.error.FFmpegError(0, f"this FFmpeg build has no {cfg.hwaccel} "
                                              f"decoding ({', '.join(hwdevices_available())})")
            return av.open(source.target, options=options, timeout=timeout,
                           hwaccel=HWAccel(cfg.hwaccel, allow_software_fallback=True))
        except av.error.FFmpegError as exc:
            # The device or the source? Open without it: if that works, it was the device.
            container = av.open(source.target, options=options, timeout=timeout)
            with _HwState.lock:
                if _HwState.failed is None:
                    _HwState.failed = str(exc)
                    log.warning("hwaccel_unavailable", hwaccel=cfg.hwaccel, error=str(exc),
                                fallback="cpu decoding")
            return container
    return av.open(source.target, options=options, timeout=timeout)


