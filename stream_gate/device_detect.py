"""CenterFace with pre- and post-processing on the model's device (torch engine, or TensorRT
with PyTorch on the GPU).

The CPU path resizes, converts and decodes with OpenCV/numpy around the network. On a
GPU that would move every frame and every output head across the bus. Here a batch of
frames is uploaded once (uint8, a quarter of the float size), then letterboxed,
converted to float RGB, run, and the heatmap thresholded on the device; only the head
values of the cells above the score threshold come back (a few dozen per frame), and the
CPU path's decoding, NMS and frame mapping finish them.

On the CPU device the same code runs too (tests/test_torch_engine.py checks it against
the onnxruntime path).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from stream_gate.detect import CenterFaceDetector, FaceDetector, Letterbox, input_size
from stream_gate.device_stages import by_shape, resize_like_opencv, upload_frames, warm_model
from stream_gate.errors import ModelError
from stream_gate.runtime import device_of
from stream_gate.types import Detections, FloatArray, ImageBGR

Cells = npt.NDArray[np.intp]
Peaks = tuple[Cells, Cells, FloatArray, FloatArray, FloatArray, FloatArray]


class DeviceCenterFaceDetector(CenterFaceDetector):
    """CenterFace with letterbox, normalisation and decoding on its model's device."""

    def __init__(self, base: CenterFaceDetector) -> None:
        """Wrap a loaded CenterFace whose model takes device tensors (see device_of)."""
        FaceDetector.__init__(self, base.cfg, base.model)
        self.quantized = base.quantized
        self.device = device_of(base.model)
        if self.device is None:
            raise ModelError(f"{base.model.name}: the model does not run on a torch device")

    @property
    def dtype(self) -> torch.dtype:
        """The precision the model runs in (fp16 on CUDA with runtime.half)."""
        dtype: torch.dtype = self.model.dtype  # type: ignore[attr-defined]
        return dtype

    def letterbox(self, frames: Sequence[torch.Tensor]
                  ) -> tuple[torch.Tensor, list[Letterbox]]:
        """Resize (area) into one zero-padded NCHW RGB float batch; how each frame sits.
        Frames of one size (a camera's) are resized together, in one call."""
        sizes = [input_size(f.shape[0], f.shape[1], self.side(f.shape[0], f.shape[1]))
                 for f in frames]
        bh, bw = max(s[0] for s in sizes), max(s[1] for s in sizes)
        batch = torch.zeros((len(frames), 3, bh, bw), device=self.device,
                            dtype=self.dtype)
        # Each frame's size once scaled (the batch pads it to bh × bw).
        fitted = [(max(1, round(f.shape[0] * s)), max(1, round(f.shape[1] * s)))
                  for f, (_, _, s) in zip(frames, sizes, strict=True)]
        for idx in by_shape(frames).values():
            nh, nw = fitted[idx[0]]
            stack = torch.stack([frames[i] for i in idx]).permute(0, 3, 1, 2).flip(1)
            # Resized exactly as OpenCV does on the CPU path, so both paths see the same
            # pixels (a borderline face otherwise tips NMS the other way).
            x = resize_like_opencv(stack.float(), nh, nw)  # -> RGB
            batch[idx, :, :nh, :nw] = x.to(batch.dtype)
        scales = [Letterbox(nw / f.shape[1], nh / f.shape[0])
                  for f, (nh, nw) in zip(frames, fitted, strict=True)]
        return batch, scales

    def detect(self, images: Sequence[ImageBGR]) -> list[Detections]:
        return self.detect_uploaded(upload_frames(images, self.device)) if images else []

    def detect_uploaded(self, frames: Sequence[torch.Tensor]) -> list[Detections]:
        """Detect on frames already on the device (uint8 HWC BGR, see upload_frames)."""
        if not frames:
            return []
        batch, scales = self.letterbox(frames)
        warm_model(self.model, tuple(batch.shape[1:]), self.cfg.batch_size)
        heads = self.model.infer_tensor(batch)  # type: ignore[attr-defined]
        return [self.to_frame(*self.decode_peaks(*peaks), scales[i], tuple(f.shape[:2]))
                for i, (f, peaks) in enumerate(zip(frames, self._peaks(*heads), strict=True))]

    def _peaks(self, heat: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor,
               lms: torch.Tensor) -> list[Peaks]:
        """The heatmaps are thresholded on the device; only the cells above it (their
        head values, for :meth:`CenterFaceDetector.decode_peaks`) come back, for the whole
        batch in two copies."""
        bs, ys, xs = torch.nonzero(heat[:, 0] > self.cfg.score_threshold, as_tuple=True)
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
