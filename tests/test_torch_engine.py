"""The torch engine: our ONNX files as PyTorch graphs, with detection, alignment and scoring
on the model's device. Checked against the onnxruntime path on the CPU here, and on CUDA
(fp16) by the ``gpu`` tests where a GPU is present.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from stream_gate.config import DetectConfig, RuntimeConfig, ScoreConfig, load_settings
from stream_gate.errors import ModelError
from stream_gate.geometry import merge
from stream_gate.pipeline.graph import build_pipeline
from stream_gate.runtime import choose_backend
from stream_gate.runtime.ort import OrtModel
from stream_gate.stages.align_score import CrFiqaScorer
from stream_gate.stages.align_score.learned import manifest_path
from stream_gate.stages.detect import build_detector, build_host_detector, centerface_onnx_bytes
from stream_gate.stages.refine import Planner, Refiner

from .conftest import batch_of, shared_file
from .parity import assert_same_faces, assert_same_quality
from .test_detect import frames_of

torch = pytest.importorskip("torch", reason="PyTorch is not installed (train/gpu extras)")

from stream_gate.runtime.torch_engine import TorchModel  # noqa: E402
from stream_gate.runtime.torch_ops import resize_like_opencv  # noqa: E402
from stream_gate.stages.detect.torch import DeviceCenterFace, DeviceDetector  # noqa: E402
from stream_gate.stages.refine.torch import DeviceRefiner  # noqa: E402

CPU = RuntimeConfig(engine="torch", device="cpu")
CUDA = RuntimeConfig(engine="torch", device="cuda", half=True)


def test_every_model_we_run_gives_onnxruntime_s_outputs(media: Callable[[str], Path]) -> None:
    frame = frames_of(media("crowd_walking_1080p.mp4"), {0})[0]
    small = cv2.resize(frame, (640, 352))
    batch = np.ascontiguousarray(small[None, :, :, ::-1].transpose(0, 3, 1, 2), np.float32)
    models = [(centerface_onnx_bytes(), batch),
              (Path(str(manifest_path("cr-fiqa-s"))).with_suffix(".onnx").read_bytes(),
               np.ascontiguousarray(batch[:, :, 100:212, 300:412]) / 127.5 - 1)]
    yunet = shared_file("models", "yunet_s_dynamic.onnx")
    models.append((yunet.read_bytes(), np.ascontiguousarray(batch[:, ::-1])))
    # v2: v1's graph and the signature student side by side, two outputs.
    models.append((manifest_path("cr-fiqa-s-v2").with_suffix(".onnx").read_bytes(),
                   models[1][1]))
    # The trainer's teacher (ReLU6 as Clip), run by `python -m trainer signature`.
    teacher = shared_file("models", "mobilefacenet_128d.onnx")
    models.append((teacher.read_bytes(), models[1][1]))
    for blob, x in models:
        ref = OrtModel(blob, "ref").infer(x)
        got = TorchModel(blob, "torch", CPU).infer(x)
        assert len(ref) == len(got)
        for r, g in zip(ref, got, strict=True):
            assert r.shape == g.shape
            assert np.abs(r - g).max() <= 1e-3 * max(1.0, float(np.abs(r).max()))


def test_a_model_with_an_operator_we_do_not_implement_is_refused_by_name() -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Softmax", ["x"], ["y"])], "g", [x], [y])
    blob = onnx.helper.make_model(graph).SerializeToString()
    with pytest.raises(ModelError, match="Softmax"):
        TorchModel(blob, "softmax", CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_asking_for_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(ModelError, match="no CUDA GPU"):
        build_detector(DetectConfig(), choose_backend(CUDA))


def check_detector(media: Callable[[str], Path], runtime: RuntimeConfig) -> None:
    frames = frames_of(media("crowd_walking_1080p.mp4"), {0, 50})
    cfg = DetectConfig(max_side=960, precision="fp32")
    backend = choose_backend(runtime)
    cpu, dev = build_host_detector(cfg), build_detector(cfg, backend)
    assert isinstance(dev, DeviceCenterFace)
    for a, b in zip(cpu.detect_images(frames), dev.detect(batch_of(frames, backend)),
                    strict=True):
        assert_same_faces(a, b)


def test_detection_on_the_device_finds_the_cpu_path_s_faces(media: Callable[[str], Path]
                                                            ) -> None:
    check_detector(media, CPU)


def check_pipeline(media: Callable[[str], Path], runtime: RuntimeConfig) -> None:
    """Same people, each one's emitted crop within 1 quality point of the onnxruntime
    path's (on a near tie between two frames either may be the one sent)."""
    def run(engine: dict[str, object]) -> dict[int, tuple[int, float]]:
        settings = load_settings(None, {
            "streams": [{"id": "cam", "url": str(media("intel_face-demographics-walking.mp4")),
                         "fps": 5.0}],
            "runtime": engine, "detect": {"precision": "fp32"}})
        report = build_pipeline(settings, collect=True).run()
        return {e.candidate.track_id: (e.candidate.frame_index, e.candidate.quality)
                for e in report.emissions}

    ref = run({"engine": "onnxruntime"})
    got = run(runtime.model_dump(mode="json"))
    assert ref and ref.keys() == got.keys()
    for tid, (_, quality) in ref.items():
        assert abs(got[tid][1] - quality) <= 1.0


def test_pipeline_on_the_torch_engine_emits_what_onnxruntime_emits(
        media: Callable[[str], Path]) -> None:
    check_pipeline(media, CPU)


@pytest.mark.gpu
def test_torch_engine_on_cuda_matches_the_cpu_path(media: Callable[[str], Path],
                                                   lfw_image: Callable[..., Path]) -> None:
    """Done-when of the GPU path for the torch engine (fp16 on the GPU)."""
    check_detector(media, CUDA)
    assert_same_quality(lfw_image, CUDA)
    check_pipeline(media, CUDA)


def test_device_resize_gives_opencv_s_pixels(media: Callable[[str], Path]) -> None:
    frame = frames_of(media("crowd_walking_1080p.mp4"), {0})[0]
    x = torch.from_numpy(frame).permute(2, 0, 1).float()
    for h, w in [(544, 960), (720, 1280), (405, 719), (1300, 2000)]:  # 2×, ×1.5, odd, up
        interp = cv2.INTER_AREA if h < frame.shape[0] else cv2.INTER_LINEAR
        ref = cv2.resize(frame, (w, h), interpolation=interp).astype(np.float32)
        got = resize_like_opencv(x, h, w).permute(1, 2, 0).numpy()
        assert np.abs(got - ref).max() <= 1.0, (h, w)
        # Shrinking is OpenCV's arithmetic; growing, its fixed-point weights round ~10 %
        # of the pixels the other way.
        assert np.abs(got - ref).mean() < (0.05 if interp == cv2.INTER_AREA else 0.15), (h, w)


def test_refinement_on_the_device_finds_the_cpu_path_s_faces(media: Callable[[str], Path]
                                                             ) -> None:
    frame = frames_of(media("crowd_walking_1080p.mp4"), {50})[0]
    cfg = DetectConfig(precision="fp32")
    faces = build_host_detector(cfg.model_copy(update={"max_side": 4096})).detect_images(
        [frame])[0]
    jobs = [(0, box) for box in faces.boxes]
    # As on the device: one window per face, two input sizes.
    reference = Refiner(build_host_detector(cfg, precise=True), Planner(96, 192, share=False))
    cpu = reference.refine(batch_of([frame]), jobs)
    backend = choose_backend(CPU)
    device = build_detector(cfg, backend, precise=True)
    assert isinstance(device, DeviceDetector)
    dev = DeviceRefiner(device.codec, device.model, Planner(96, 192, share=False)).refine(
        batch_of([frame], backend), jobs)
    assert sum(len(d) for d in cpu) >= 5
    assert [len(d) for d in dev] == [len(d) for d in cpu]
    assert_same_faces(merge(cpu, 1.0), merge(dev, 1.0))  # all of them, unsuppressed


def test_fp16_arithmetic_keeps_the_faces_and_the_quality(media: Callable[[str], Path],
                                                         lfw_image: Callable[..., Path]) -> None:
    """What runtime.half does on a GPU, done on the CPU: no overflow or drift beyond the
    GPU path's tolerances in either model."""
    frames = frames_of(media("crowd_walking_1080p.mp4"), {0, 50})
    cfg = DetectConfig(max_side=960, precision="fp32")
    half = build_host_detector(cfg, CPU)
    assert isinstance(half.model, TorchModel)
    half.model.set_dtype(torch.float16)
    for a, b in zip(build_host_detector(cfg).detect_images(frames), half.detect_images(frames),
                    strict=True):
        assert_same_faces(a, b)
    scorer = CrFiqaScorer.load(ScoreConfig().model, CPU)
    assert isinstance(scorer.model, TorchModel)
    scorer.model.set_dtype(torch.float16)
    assert_same_quality(lfw_image, CPU, scorer)


@pytest.mark.gpu
def test_cuda_graphs_give_the_eager_outputs_on_few_shapes(lfw_image: Callable[..., Path]
                                                          ) -> None:
    """Batches of every size run on a handful of captured graphs (a new shape costs cuDNN
    ~1 s), each giving what the network gives eagerly."""
    if not torch.cuda.is_available():
        pytest.skip("PyTorch here has no CUDA")
    blob = Path(str(manifest_path("cr-fiqa-s"))).with_suffix(".onnx").read_bytes()
    face = cv2.resize(cv2.imread(str(lfw_image())), (112, 112))
    x = torch.from_numpy(face).permute(2, 0, 1).float().div(127.5).sub(1).cuda()
    graphs = TorchModel(blob, "graphs", CUDA)
    eager = TorchModel(blob, "eager", CUDA.model_copy(update={"cuda_graphs": False}))
    assert graphs.runner is not None and eager.runner is None
    for n in [*range(1, 21), 150]:  # 150: chunks of 64, 64 and 22 (padded to 32)
        batch = x[None].repeat(n, 1, 1, 1) * torch.linspace(0.6, 1.0, n, device="cuda")[
            :, None, None, None]
        got, want = graphs.infer_tensor(batch)[0], eager.infer_tensor(batch)[0]
        assert got.shape[0] == n
        assert torch.allclose(got, want, atol=1e-3), n
    assert len(graphs.runner.graphs) == 7  # 1, 2, 4, 8, 16, 32, 64


def test_refinement_crops_cut_together_on_the_device_are_the_cpu_path_s(
        media: Callable[[str], Path]) -> None:
    """Windows of one size are cut from several frames in one gather: the pixels are
    those OpenCV cuts face by face, black past the frame's edges included."""
    frames = frames_of(media("crowd_walking_1080p.mp4"), {0, 50})
    backend = choose_backend(CPU)
    detector = build_detector(DetectConfig(precision="fp32"), backend, precise=True)
    assert isinstance(detector, DeviceDetector)
    planner = Planner(96, 192, share=False)
    cpu = Refiner(detector.codec, planner)
    dev = DeviceRefiner(detector.codec, detector.model, planner)
    on_device = batch_of(frames, backend).device
    assert on_device is not None
    boxes = {20: [(-5, -8, 15, 12), (900, 500, 920, 520), (1905, 1070, 1925, 1090),
                  (300, 40, 320, 60)],  # tiny faces: 96-px native windows, corners, edges
             40: [(-15, -18, 25, 22), (1895, 1060, 1935, 1100), (600, 300, 640, 340)],
             120: [(-40, 900, 80, 1020), (1000, 300, 1120, 420)]}  # 240 px shrunk to 96
    want_windows = {20: (96, 96, 96), 40: (192, 192, 192), 120: (240, 240, 96)}
    for size, group in boxes.items():
        jobs = [(i % 2, np.array(b, np.float32)) for i, b in enumerate(group)]
        windows = planner.plan(jobs)
        assert {(w.w, w.h, w.out_w) for w in windows} == {want_windows[size]}
        got = dev._cut(on_device, [fi for fi, _ in jobs], windows)
        for (fi, _), win, crop in zip(jobs, windows, got, strict=True):
            want = cpu.crop(frames[fi], win)[:, :, ::-1]  # RGB, as the detector reads
            diff = np.abs(crop.permute(1, 2, 0).numpy() - want.astype(np.float32))
            assert diff.max() <= 1.0, (win, diff.max())


def test_a_batch_over_the_largest_bucket_runs_in_chunks_with_the_same_scores(
        lfw_image: Callable[..., Path]) -> None:
    """What the GPU path does with 150 faces (chunks of 64, 64 and 22 padded to 32),
    checked on the CPU: every face keeps the score the whole batch gives it."""
    from stream_gate.runtime.cuda_graphs import buckets_up_to, run_bucketed

    blob = Path(str(manifest_path("cr-fiqa-s"))).with_suffix(".onnx").read_bytes()
    model = TorchModel(blob, "chunks", CPU)
    face = cv2.resize(cv2.imread(str(lfw_image())), (112, 112))
    x = torch.from_numpy(face).permute(2, 0, 1).float().div(127.5).sub(1)
    batch = x[None].repeat(150, 1, 1, 1) * torch.linspace(0.2, 1.0, 150)[:, None, None, None]
    sizes: list[int] = []

    def run(b: torch.Tensor) -> list[torch.Tensor]:
        sizes.append(b.shape[0])
        return model.infer_tensor(b)

    got = run_bucketed(run, batch)[0]
    assert sizes == [64, 64, 32] and set(sizes) <= set(buckets_up_to(1000))
    assert torch.allclose(got, model.infer_tensor(batch)[0], atol=1e-4)
    assert got.shape[0] == 150 and len(set(got.reshape(-1).tolist())) > 100  # not padding
