"""Face recognisers used as CR teacher and as evaluation comparators.

- :class:`OnnxRecogniser`: any ArcFace-aligned 112×112 ONNX embedder, e.g.
  ``../shared/data/models/mobilefacenet_128d.onnx`` (input RGB, (x − 127.5)/128). Its
  fixed batch of 1 is made dynamic in memory at load.
- :class:`DlibRecogniser`: dlib's ResNet (``dlib-bin`` + ``face-recognition-models``),
  an independent comparator trained on other data with its own alignment: the 5 dlib
  landmarks are found again on our crop and dlib cuts its own 150×150 chip.

Both return L2-normalised embeddings (N×D float32) for BGR uint8 crops.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper
from tqdm import tqdm

from stream_gate.runtime.ort import OrtModel

Crops = npt.NDArray[np.uint8]
Emb = npt.NDArray[np.float32]


def _l2(x: npt.NDArray[np.floating]) -> Emb:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make dim 0 of inputs/outputs symbolic and fix ``Reshape`` shapes that pin batch 1."""
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "B"
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        arr = numpy_helper.to_array(node.attribute[0].t)
        if arr.dtype == np.int64 and arr.ndim == 1 and arr.size == 2 and arr[0] == 1:
            new = numpy_helper.from_array(np.array([0, arr[1]], np.int64))
            node.attribute[0].t.CopyFrom(new)
    return model


class OnnxRecogniser:
    def __init__(self, path: Path, mean: float = 127.5, std: float = 128.0) -> None:
        model = dynamic_batch(onnx.load(str(path)))
        self.model = OrtModel(model.SerializeToString(), path.name)
        self.name = path.stem
        self.mean, self.std = mean, std

    def embed(self, crops: Crops, batch: int = 64, progress: str | None = None) -> Emb:
        out = []
        for s in tqdm(range(0, len(crops), batch), desc=progress, disable=progress is None):
            x = np.asarray(crops[s : s + batch])[..., ::-1].astype(np.float32)  # BGR -> RGB
            x = ((x - self.mean) / self.std).transpose(0, 3, 1, 2)
            out.append(self.model.infer(np.ascontiguousarray(x))[0])
        return _l2(np.concatenate(out))


class DlibRecogniser:
    name = "dlib_resnet"

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise SystemExit(
                f"the dlib comparator needs `pip install dlib-bin face-recognition-models`: {exc}"
            ) from None
        self.dlib = dlib
        self.sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def embed(self, crops: Crops, batch: int = 64, progress: str | None = None) -> Emb:
        out = np.zeros((len(crops), 128), np.float32)
        # Our crop is ArcFace-aligned: the face fills roughly this box of the 112 image.
        rect = self.dlib.rectangle(18, 26, 94, 108)
        for i in tqdm(range(len(crops)), desc=progress, disable=progress is None):
            rgb = np.ascontiguousarray(np.asarray(crops[i])[..., ::-1])
            shape = self.sp(rgb, rect)
            chip = self.dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            out[i] = np.asarray(self.net.compute_face_descriptor(chip), np.float32)
        return _l2(out)


def cached_embed(folder: Path, name: str, crops: Crops, embed: Callable[[Crops], Emb]) -> Emb:
    """``embed(crops)``, kept in ``folder`` under a hash of the crops: dlib takes minutes,
    and a benchmark's crops change only with its clips, pipeline or protocol."""
    key = hashlib.sha1(np.ascontiguousarray(crops).tobytes()).hexdigest()[:16]
    path = folder / f"embeddings-{name}-{key}.npy"
    if path.exists():
        cached: Emb = np.load(path)
        return cached
    emb = embed(crops)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb
