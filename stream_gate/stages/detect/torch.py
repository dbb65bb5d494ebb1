"""Detection on the model's device (torch engine, or TensorRT with PyTorch on CUDA).

The host path resizes, converts and decodes with OpenCV/numpy around the network. On a
GPU that would move every frame and every output head across the bus. Here the batch's
frames, uploaded once by the batch stage, are letterboxed, converted to float and run
on the device. For CenterFace the heatmap is thresholded there too: only the head values
of the cells above the score threshold come back (a few dozen per frame), and the host
codec's decoding, NMS and frame mapping finish them. Other codecs (YuNet) bring their
output heads back whole.

On the CPU device the same code runs too (tests/test_torch_engine.py checks it against
the onnxruntime path).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from stream_gate.runtime import DeviceModel
from stream_gate.runtime.torch_ops import by_shape, resize_like_opencv
from stream_gate.stages.detect.base import FaceDetector, Letterbox
from stream_gate.stages.detect.centerface import CenterFaceDetector
from stream_gate.types import Detections, FloatArray, FrameBatch

Cells = npt.NDArray[np.intp]
Peaks = tuple[Cells, Cells, FloatArray, FloatArray, FloatArray, FloatArray]


class DeviceDetector:
    """A detector codec whose letterbox and network run on the model's device."""

    def __init__(self, codec: FaceDetector, model: DeviceModel) -> None:
        self.codec = codec
        self.model = model

    @property
    def name(self) -> str:
        return self.codec.name

    @property
    def quantized(self) -> bool:
        return self.codec.quantized

    def scale(self, height: int, width: int) -> float:
        return self.codec.scale(height, width)

    def letterbox(self, frames: Sequence[torch.Tensor]
                  ) -> tuple[torch.Tensor, list[Letterbox]]:
        """Resize (area) into one zero-padded NCHW float batch in the network's colour
        order; how each frame sits. Frames of one size (a camera's) are resized together,
        in one call."""
        lay = self.codec.layout([tuple(f.shape) for f in frames])
        batch = torch.zeros((len(frames), 3, lay.height, lay.width), device=self.model.device,
                            dtype=self.model.dtype)
        for idx in by_shape(frames).values():
            lb = lay.frames[idx[0]]
            stack = torch.stack([frames[i] for i in idx]).permute(0, 3, 1, 2)
            if self.codec.rgb:
                stack = stack.flip(1)
            # Resized exactly as OpenCV does on the host path, so both paths see the same
            # pixels (a borderline face otherwise tips NMS the other way).
            x = resize_like_opencv(stack.float(), lb.h, lb.w)
            batch[idx, :, :lb.h, :lb.w] = x.to(batch.dtype)
        return batch, lay.frames

    def detect(self, batch: FrameBatch) -> list[Detections]:
        """The faces of every frame of the batch, from its device copies."""
        if batch.device is None:
            raise ValueError("a device detector needs the batch's frames on its device")
        frames = batch.device
        if not frames:
            return []
        x, scales = self.letterbox(frames)
        self.model.warm(tuple(x.shape[1:]), self.codec.cfg.batch_size)
        heads = self.model.infer_tensor(x)
        return self.decode(heads, frames, scales, (int(x.shape[2]), int(x.shape[3])))

    def decode(self, heads: list[torch.Tensor], frames: Sequence[torch.Tensor],
               scales: list[Letterbox], input_hw: tuple[int, int]) -> list[Detections]:
        """Heads back to the host, decoded there by the codec."""
        host = [h.cpu().numpy() for h in heads]
        return [self.codec.to_frame(*self.codec.decode(host, i, input_hw), scales[i],
                                    tuple(f.shape[:2])) for i, f in enumerate(frames)]


class DeviceCenterFace(DeviceDetector):
    """CenterFace's heatmap thresholded on the device: only its peaks come back."""

    codec: CenterFaceDetector

    def __init__(self, codec: CenterFaceDetector, model: DeviceModel) -> None:
        super().__init__(codec, model)

    def decode(self, heads: list[torch.Tensor], frames: Sequence[torch.Tensor],
               scales: list[Letterbox], input_hw: tuple[int, int]) -> list[Detections]:
        return [self.codec.to_frame(*self.codec.decode_peaks(*peaks), scales[i],
                                    tuple(f.shape[:2]))
                for i, (f, peaks) in enumerate(zip(frames, self._peaks(*heads), strict=True))]

    def _peaks(self, heat: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor,
               lms: torch.Tensor) -> list[Peaks]:
        """The cells above the threshold (their head values, for
        :meth:`CenterFaceDetector.decode_peaks`), for the whole batch in two copies."""
        bs, ys, xs = torch.nonzero(heat[:, 0] > self.codec.cfg.score_threshold, as_tuple=True)
        heads = torch.cat([heat[bs, :, ys, xs], scale[bs, :, ys, xs], offset[bs, :, ys, xs],
                           lms[bs, :, ys, xs]], dim=1)
        values = np.asarray(heads.cpu().numpy(), np.float32)  # float32 already: no copy
        where = torch.stack([bs, ys, xs]).cpu().numpy()
        ends = np.searchsorted(where[0], np.arange(heat.shape[0] + 1))  # row-major: sorted
        out: list[Peaks] = []
        for a, b in itertools.pairwise(ends):
            v = values[a:b].T
            out.append((where[1, a:b], where[2, a:b], v[0], v[1:3], v[3:5], v[5:]))
        return out
