"""Decode: sampling, media time, loop://, drop-oldest, unreadable and corrupt files."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from stream_gate.config import DecodeConfig
from stream_gate.errors import SourceError
from stream_gate.stages.decode import Source, StreamReader
from stream_gate.stages.decode import source as decode
from stream_gate.types import Frame


def drain(reader: StreamReader, limit: int = 10_000, timeout: float = 60) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < limit and time.monotonic() < deadline:
        f = reader.queue.get_nowait()
        if f is not None:
            frames.append(f)
        elif reader.queue.exhausted:
            break
        else:
            time.sleep(0.002)
    return frames


def test_file_is_sampled_to_target_fps_with_nothing_dropped(media: Callable[[str], Path]) -> None:
    # crowd_walking_1080p.mp4: 105 frames at 25 fps (4.2 s); 5 fps keeps every 5th frame.
    src = Source.parse("crowd", str(media("crowd_walking_1080p.mp4")), fps=5)
    reader = StreamReader(src, DecodeConfig(queue_size=2, skip_nonref=False), threading.Event())
    reader.start()
    frames = drain(reader)
    reader.join(5)
    assert reader.state == "ended" and reader.error is None
    assert reader.decoded == 105
    assert [f.index for f in frames] == list(range(0, 105, 5))
    assert reader.queue.dropped == 0
    ts = [f.t for f in frames]
    assert ts[0] == pytest.approx(0.0)
    assert all(b - a == pytest.approx(0.2, abs=1e-3) for a, b in pairwise(ts))
    assert frames[0].image.shape == (1080, 1920, 3)
    assert all(f.stream_id == "crowd" and f.wall_ms > 0 for f in frames)


def test_loop_plays_forever_with_monotonic_time(media: Callable[[str], Path]) -> None:
    # 41 frames at 12 fps: 150 frames take more than three loops.
    src = Source.parse("walk", "loop://" + str(media("intel_face-demographics-walking.mp4")), 100)
    assert src.is_live
    stop = threading.Event()
    reader = StreamReader(src, DecodeConfig(queue_size=1000, loop_speed=0), stop)
    reader.start()
    frames = drain(reader, limit=150)
    stop.set()
    reader.join(5)
    assert len(frames) == 150
    ts = [f.t for f in frames]
    assert all(b > a for a, b in pairwise(ts))
    assert ts[-1] > 150 / 12 - 1


def test_live_source_drops_oldest_when_not_consumed(media: Callable[[str], Path]) -> None:
    src = Source.parse("walk", "loop://" + str(media("intel_face-demographics-walking.mp4")), 100)
    stop = threading.Event()
    reader = StreamReader(src, DecodeConfig(queue_size=4, loop_speed=0), stop)
    reader.start()
    deadline = time.monotonic() + 30
    while reader.sampled < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join(5)
    assert len(reader.queue) == 4
    assert reader.queue.dropped == reader.sampled - 4
    newest = [reader.queue.get_nowait() for _ in range(4)]
    assert [f.index for f in newest if f] == sorted(f.index for f in newest if f)
    assert newest[-1] is not None and newest[-1].index >= reader.sampled - 4


def test_missing_and_unreadable_files_fail_the_check(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="video file not found"):
        Source.parse("a", str(tmp_path / "none.mp4"), 5).check()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 1000)
    with pytest.raises(SourceError, match=r"stream 'b': cannot read video .*junk\.mp4"):
        Source.parse("b", str(junk), 5).check()


def test_corrupt_bytes_mid_file_do_not_stop_decoding(media: Callable[[str], Path],
                                                      tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.mp4"
    shutil.copy(media("crowd_walking_1080p.mp4"), damaged)
    data = bytearray(damaged.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 20_000] = bytes(range(256)) * 78 + bytes(32)  # overwrite ~20 kB
    damaged.write_bytes(bytes(data))
    reader = StreamReader(Source.parse("d", str(damaged), 25), DecodeConfig(), threading.Event())
    reader.start()
    frames = drain(reader)
    reader.join(5)
    assert reader.state == "ended"
    assert len(frames) > 90  # the frames around the damage may be lost, the rest arrive
    assert frames[-1].index >= 100


def test_loop_replays_at_the_files_own_frame_rate(media: Callable[[str], Path]) -> None:
    # 12 fps file: in ~1.5 s a paced replay yields ~18 frames, not hundreds.
    src = Source.parse("walk", "loop://" + str(media("intel_face-demographics-walking.mp4")), 100)
    stop = threading.Event()
    reader = StreamReader(src, DecodeConfig(queue_size=1000), stop)
    reader.start()
    time.sleep(1.5)
    stop.set()
    reader.join(5)
    assert 12 <= reader.sampled <= 24


def test_skipping_non_reference_frames_decodes_less_and_keeps_the_rate(
    media: Callable[[str], Path],
) -> None:
    # The 1080p clip has B-frames (78 of 105): at 5 of 25 fps they need not be decoded.
    src = Source.parse("crowd", str(media("crowd_walking_1080p.mp4")), fps=5)
    reader = StreamReader(src, DecodeConfig(queue_size=200), threading.Event())
    reader.start()
    frames = drain(reader)
    reader.join(5)
    assert reader.decoded < 70
    assert 18 <= len(frames) <= 22  # ~5 fps over 4.2 s
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx)) and idx[-1] <= 104
    assert all(b.t - a.t >= 0.15 for a, b in pairwise(frames))


def test_absurd_inputs_are_refused_per_stream(media: Callable[[str], Path],
                                              tmp_path: Path) -> None:
    # Above the resolution cap: failed with a clear error, no frame, no retry loop.
    src = Source.parse("big", "loop://" + str(media("crowd_walking_1080p.mp4")), 5)
    reader = StreamReader(src, DecodeConfig(max_pixels=1280 * 720), threading.Event())
    reader.start()
    reader.join(10)
    assert reader.state == "failed" and reader.sampled == 0
    assert reader.error == "stream 'big': resolution 1920x1080 is above decode.max_pixels (921600)"
    # An audio-only file: no video stream.
    import av
    import numpy as np

    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as out:
        st = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for p in st.encode(frame):
            out.mux(p)
        for p in st.encode():
            out.mux(p)
    reader = StreamReader(Source.parse("mic", "loop://" + str(wav), 5), DecodeConfig(),
                          threading.Event())
    reader.start()
    reader.join(10)
    assert reader.state == "failed"
    assert reader.error == "stream 'mic': the source has no video stream"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU may decode here")
def test_hwaccel_without_a_gpu_decodes_on_the_cpu_and_says_so_once(
        media: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(decode._HwState, "failed", None)
    cfg = DecodeConfig(hwaccel="cuda", skip_nonref=False)
    runs = []
    for name in ("a", "b"):
        reader = StreamReader(Source.parse(name, str(media("crowd_walking_1080p.mp4")), fps=5),
                              cfg, threading.Event())
        reader.start()
        runs.append(drain(reader))
        reader.join(5)
        assert reader.state == "ended" and reader.error is None
    plain = StreamReader(Source.parse("c", str(media("crowd_walking_1080p.mp4")), fps=5),
                         DecodeConfig(skip_nonref=False), threading.Event())
    plain.start()
    ref = drain(plain)
    assert [f.index for f in runs[0]] == [f.index for f in ref] == list(range(0, 105, 5))
    assert all((a.image == b.image).all() for a, b in zip(runs[1], ref, strict=True))
    assert decode.hwaccel_error()  # remembered: later opens go straight to the CPU
    logged = capsys.readouterr()
    assert (logged.out + logged.err).count("hwaccel_unavailable") == 1
    # A bad file is still the file's fault, not the GPU's.
    with pytest.raises(SourceError, match="video file not found"):
        Source.parse("d", str(tmp_path / "none.mp4"), 5).check()


def test_a_file_whose_frames_all_say_time_zero_is_still_sampled_at_its_rate(
        media: Callable[[str], Path], tmp_path: Path) -> None:
    """Some muxers and cameras stamp every frame 0; sampling by media time must not stall."""
    import av

    broken = tmp_path / "zero_pts.mp4"
    with av.open(str(media("intel_classroom.mp4"))) as src, av.open(str(broken), "w") as out:
        enc = out.add_stream("libx264", rate=25)
        enc.width, enc.height, enc.pix_fmt = 320, 180, "yuv420p"
        for i, f in enumerate(src.decode(video=0)):
            g = f.reformat(width=320, height=180, format="yuv420p")
            g.pts = i  # in the default time base, which the muxer rounds to 0 every time
            for p in enc.encode(g):
                out.mux(p)
            if i == 49:
                break
        for p in enc.encode():
            out.mux(p)
    with av.open(str(broken)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert len(times) >= 40 and set(times) == {0.0}  # the input really is broken
    reader = StreamReader(Source.parse("z", str(broken), fps=5), DecodeConfig(skip_nonref=False),
                          threading.Event())
    reader.start()
    frames = drain(reader)
    reader.join(5)
    assert reader.decoded == len(times)
    assert len(frames) == -(-len(times) // 5)  # placed at 25 fps, sampled at 5 fps
    assert all(b.t > a.t for a, b in pairwise(frames))


def test_media_time_after_a_camera_gap_follows_the_wall_clock() -> None:
    """A reconnected camera restarts its timestamps: its media time resumes as far after
    the last frame as the camera was away (a file's next loop: one period after)."""
    from stream_gate.stages.decode.clock import Clock

    clock = Clock()
    last = [clock.stamp(k * 0.2, 0.2) for k in range(5)][-1]
    clock.restart(gap_s=6.0)  # the camera was silent for 6 s
    assert clock.stamp(0.0, 0.2) == pytest.approx(last + 6.0)
    assert clock.stamp(0.2, 0.2) == pytest.approx(last + 6.2)
    looped = Clock()
    end = [looped.stamp(k * 0.2, 0.2) for k in range(5)][-1]
    looped.restart()  # a file played again: no gap
    assert looped.stamp(0.0, 0.2) == pytest.approx(end + 0.2)


def test_a_truncated_recording_and_a_failed_stream_are_logged_as_such(
        media: Callable[[str], Path], tmp_path: Path) -> None:
    """A file that stops before the duration its header declares ends with a warning;
    a stream that fails for good is logged at error level, not info."""
    from structlog.testing import capture_logs

    whole = media("intel_asl_again.mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: int(len(whole) * 0.6)])
    missing = tmp_path / "gone.mp4"
    with capture_logs() as logs:
        for path in (cut, missing):
            reader = StreamReader(Source.parse(path.stem, str(path), 25), DecodeConfig(),
                                  threading.Event())
            reader.start()
            drain(reader, timeout=30)
            reader.join(10)
    ended = next(e for e in logs if e.get("stream_id") == "cut" and e["state"] == "ended")
    assert ended["log_level"] == "warning" and ended["declared_s"] > ended["ended_at_s"] + 1
    failed = next(e for e in logs if e.get("stream_id") == "gone" and e["state"] == "failed")
    assert failed["log_level"] == "error"
