"""Runtimes: engine selection with clear errors, TensorRT recipes and engine cache keys.

TensorRT build/execution tests are marked ``gpu`` and skip where TensorRT is absent.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stream_gate.cli import main
from stream_gate.config import DetectConfig, RuntimeConfig, ScoreConfig, load_settings
from stream_gate.errors import ModelError
from stream_gate.runtime import Backend, choose_backend
from stream_gate.runtime.tensorrt import RECIPES, Recipe, cache_key
from stream_gate.service.engines import calibration_batches, read_frames
from stream_gate.stages.align_score import build_scorer
from stream_gate.stages.detect import build_detector, build_host_detector

from .conftest import batch_of
from .parity import assert_same_faces, assert_same_quality
from .test_detect import frames_of

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_asking_for_tensorrt_without_it_names_the_package() -> None:
    trt = RuntimeConfig(engine="tensorrt")
    with pytest.raises(ModelError, match=r"'tensorrt'.*stream-gate\[gpu\]"):
        build_host_detector(DetectConfig(), trt)
    with pytest.raises(ModelError, match=r"'tensorrt'"):
        build_scorer(ScoreConfig(), Backend(trt))


def test_engine_is_a_checked_config_key() -> None:
    assert load_settings(None, {"runtime": {"engine": "tensorrt"}}).runtime.engine == "tensorrt"
    with pytest.raises(Exception, match=r"runtime.engine"):
        load_settings(None, {"runtime": {"engine": "openvino"}})


def test_every_shipped_model_has_a_recipe_that_fits_how_it_is_called() -> None:
    cf = Recipe.for_model("centerface-int8")
    assert cf.model == "centerface" and Recipe.for_model("centerface") == cf
    lo, _, hi = cf.shapes()
    # A frame-wide batch of four 1080p frames at 960 and a batch of 96 px refine crops.
    for shape in [(4, 3, 544, 960), (32, 3, 96, 96), (1, 3, 1088, 1920)]:
        assert all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)), shape
    q = Recipe.for_model("cr-fiqa-s@1")
    assert q.shapes()[1] == (64, 3, 112, 112)
    assert Recipe.for_model("yunet").model == "yunet"
    with pytest.raises(ModelError, match="no engine recipe"):
        Recipe.for_model("resnet50")
    assert {p.stem for p in RECIPES.glob("*.toml")} >= {"centerface", "cr-fiqa-s", "yunet"}


def test_engine_cache_key_changes_with_everything_an_engine_depends_on() -> None:
    r = Recipe.for_model("centerface")
    base = cache_key(b"onnx", r, "NVIDIA H100", (9, 0), "10.3.0")
    assert base == cache_key(b"onnx", r, "NVIDIA H100", (9, 0), "10.3.0")
    others = {
        cache_key(b"onnx2", r, "NVIDIA H100", (9, 0), "10.3.0"),
        cache_key(b"onnx", Recipe.for_model("yunet"), "NVIDIA H100", (9, 0), "10.3.0"),
        cache_key(b"onnx", r, "NVIDIA L4", (8, 9), "10.3.0"),
        cache_key(b"onnx", r, "NVIDIA H100", (9, 0), "10.4.0"),
    }
    assert base not in others and len(others) == 4


@pytest.mark.gpu
def test_tensorrt_matches_onnxruntime_on_real_frames(media: Callable[[str], Path],
                                                    lfw_image: Callable[..., Path],
                                                    tmp_path: Path) -> None:
    """Done-when of the GPU path: detections one-to-one with IoU >= 0.95, landmarks
    within 1 px, quality within 1 point of the CPU path."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed")
    trt = RuntimeConfig(engine="tensorrt", engine_cache=tmp_path)
    frames = frames_of(media("crowd_walking_1080p.mp4"), {0, 50})
    for precision in ("fp32", "int8"):
        cfg = DetectConfig(max_side=960, precision=precision)
        backend = choose_backend(trt)
        cpu, gpu = build_host_detector(cfg), build_detector(cfg, backend)
        for a, b in zip(cpu.detect_images(frames), gpu.detect(batch_of(frames, backend)),
                        strict=True):
            assert_same_faces(a, b)
    assert_same_quality(lfw_image, trt)
    assert list(tmp_path.glob("*.engine")), "engines were not cached"


def test_engines_list_shows_what_the_cache_holds(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gpu.toml"
    config.write_text(f'[runtime]\nengine_cache = "{tmp_path / "cache"}"\n')
    assert main(["engines", "list", "--config", str(config)]) == 0
    assert "no engines in" in capsys.readouterr().out
    # What load_or_build leaves behind: the engine and its sidecar.
    (tmp_path / "cache").mkdir()
    engine = tmp_path / "cache" / "centerface-0123456789abcdef0123.engine"
    engine.write_bytes(b"\0" * 3 * 2**20)
    engine.with_suffix(".json").write_text(json.dumps(
        {"model": "centerface", "gpu": "NVIDIA H100 80GB HBM3", "tensorrt": "10.3.0",
         "int8": True}))
    assert main(["engines", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "1 engine(s)" in out and "centerface" in out and "NVIDIA H100" in out
    assert "int8" in out and "3.0 MB" in out


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
@pytest.mark.parametrize("action", ["build", "verify"])
def test_engines_build_and_verify_without_tensorrt_name_the_package(
        action: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engines", action]) == 2
    assert "'tensorrt'" in capsys.readouterr().err


def test_int8_calibration_sees_the_detector_s_own_inputs(media: Callable[[str], Path]) -> None:
    frames = read_frames(media("crowd_walking_1080p.mp4"), 9)
    assert len(frames) == 9
    cfg = DetectConfig()
    batches = calibration_batches(cfg, frames)
    assert len(batches) == 2  # whole batches of 4 only
    fp32 = build_host_detector(cfg.model_copy(update={"precision": "fp32"}))
    expected = fp32.prepare(frames[:4])[0]
    assert np.array_equal(batches[0], expected)
    lo, _, hi = Recipe.for_model("centerface").shapes()
    assert all(a <= s <= b for a, s, b in zip(lo, batches[0].shape, hi, strict=True))


@pytest.mark.gpu
def test_engines_build_then_verify_on_the_gpu(media: Callable[[str], Path], tmp_path: Path
                                             ) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    config = tmp_path / "gpu.toml"
    config.write_text(f'[runtime]\nengine = "tensorrt"\nengine_cache = "{tmp_path}"\n')
    video = str(media("crowd_walking_1080p.mp4"))
    assert main(["engines", "build", "--config", str(config), "--calibrate", video]) == 0
    assert list(tmp_path.glob("*.calib")), "no int8 calibration cache written"
    assert main(["engines", "verify", "--config", str(config), "--media", video]) == 0
