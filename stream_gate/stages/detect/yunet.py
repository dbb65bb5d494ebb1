"""YuNet (libfacedetection, Apache-2.0): an optional, faster detector from a file you give.

No registry ships its weights, so stream-gate never bundles or downloads it: set
``detect.model = "yunet"`` and ``detect.model_path`` to a YuNet ONNX file with dynamic
input (``yunet_s_dynamic.onnx``). The network takes BGR pixels as they are (0–255) and
predicts, at strides 8, 16 and 32, per grid cell: a class and an objectness score (the
face score is their geometric mean), a box (centre offset in cells, log size in cells)
and 5 landmarks (offsets in cells) in the order right eye, left eye, nose, right and left
mouth corner of the person, i.e. image-left first, as stream-gate orders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from stream_gate.config import DetectConfig
from stream_gate.errors import ModelError
from stream_gate.geometry import nms
from stream_gate.runtime import Model
from stream_gate.stages.detect.base import FaceDetector
from stream_gate.types import Detections, FloatArray

STRIDES = (8, 16, 32)
OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)


def yunet_onnx_bytes(path: Path | None) -> bytes:
    """The YuNet file at ``path``, checked to have YuNet's outputs and a dynamic input."""
    if path is None:
        raise ModelError('detect.model = "yunet" needs detect.model_path (a YuNet ONNX file)')
    if not path.is_file():
        raise ModelError(f"detect.model_path: YuNet model not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"detect.model_path: {path} is not an ONNX model: {exc}") from None
    names = {o.name for o in model.graph.output}
    if set(OUTPUTS) - names:
        raise ModelError(f"detect.model_path: {path} is not a YuNet model "
                         f"(outputs {sorted(names)}, expected {list(OUTPUTS)})")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if any(d.dim_value for d in dims[2:]):
        raise ModelError(f"detect.model_path: {path} has a fixed input size; use the "
                         "dynamic YuNet (e.g. yunet_s_dynamic.onnx)")
    return path.read_bytes()


class YuNetDetector(FaceDetector):
    """YuNet behind the same interface as CenterFace (batched, letterboxed to /32)."""

    name = "yunet"
    rgb = False

    def __init__(self, cfg: DetectConfig, model: Model) -> None:
        super().__init__(cfg, model)
        self._index = {n: self.model.output_names.index(n) for n in OUTPUTS}

    def decode(
        self, heads: Sequence[FloatArray], i: int, input_hw: tuple[int, int]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Boxes, scores and landmarks of batch item ``i`` in detector-input pixels."""
        boxes, scores, marks = [], [], []
        for s in STRIDES:
            cls = heads[self._index[f"cls_{s}"]][i, :, 0]
            obj = heads[self._index[f"obj_{s}"]][i, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = np.flatnonzero(score > self.cfg.score_threshold)
            if keep.size == 0:
                continue
            r, c = np.divmod(keep, input_hw[1] // s)  # row-major grid of the input
            bb = heads[self._index[f"bbox_{s}"]][i, keep]
            kp = heads[self._index[f"kps_{s}"]][i, keep].reshape(-1, 5, 2)
            cx, cy = (c + bb[:, 0]) * s, (r + bb[:, 1]) * s
            w, h = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
            lm = np.empty_like(kp)
            lm[:, :, 0] = (kp[:, :, 0] + c[:, None]) * s
            lm[:, :, 1] = (kp[:, :, 1] + r[:, None]) * s
            marks.append(lm)
            scores.append(score[keep])
        if not scores:
            e = Detections.empty()
            return e.boxes, e.scores, e.landmarks
        b = np.concatenate(boxes).astype(np.float32)
        sc = np.concatenate(scores).astype(np.float32)
        m = np.concatenate(marks).astype(np.float32)
        k = nms(b, sc, self.cfg.nms_iou)
        return b[k], sc[k], m[k]
