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

from collections.abc import Sequence

import numpy as np
import torch

from stream_gate.detect import CenterFaceDetector, FaceDetector, Letterbox, input_size
from stream_gate.device_stages import resize_like_opencv, upload_frames
from stream_gate.errors import ModelError
from stream_gate.runtime import device_of
from stream_gate.types import Detections, FloatArray, ImageBGR


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
        """Resize (area) into one zero-padded NCHW RGB float batch; how each frame sits."""
        sizes = [input_size(f.shape[0], f.shape[1], self.side(f.shape[0], f.shape[1]))
                 for f in frames]
        bh, bw = max(s[0] for s in sizes), max(s[1] for s in sizes)
        batch = torch.zeros((len(frames), 3, bh, bw), device=self.device,
                            dtype=self.dtype)
        scales: list[Letterbox] = []
        for i, (f, (_, _, s)) in enumerate(zip(frames, sizes, strict=True)):
            h, w = f.shape[:2]
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            # Resized exactly as OpenCV does on the CPU path, so both paths see the same
            # pixels (a borderline face otherwise tips NMS the other way).
            x = resize_like_opencv(f.permute(2, 0, 1).flip(0).float(), nh, nw)  # -> RGB
            batch[i, :, :nh, :nw] = x.to(batch.dtype)
            scales.append(Letterbox(nw / w, nh / h))
        return batch, scales

    def detect(self, images: Sequence[ImageBGR]) -> list[Detections]:
        return self.detect_uploaded(upload_frames(images, self.device)) if images else []

    def detect_uploaded(self, frames: Sequence[torch.Tensor]) -> list[Detections]:
        """Detect on frames already on the device (uint8 HWC BGR, see upload_frames)."""
        if not frames:
            return []
        batch, scales = self.letterbox(frames)
        heat, scale, offset, lms = self.model.infer_tensor(batch)  # type: ignore[attr-defined]
        return [self.to_frame(*self._decode_on_device(heat[i], scale[i], offset[i], lms[i]),
                              scales[i], tuple(f.shape[:2])) for i, f in enumerate(frames)]

    def _decode_on_device(self, heat: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor,
                          lms: torch.Tensor) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The heatmap is thresholded on the device; only the cells above it (their head
        values) come back, for :meth:`CenterFaceDetector.decode_peaks` on the host."""
        ys, xs = torch.nonzero(heat[0] > self.cfg.score_threshold, as_tuple=True)

        def host(t: torch.Tensor) -> FloatArray:
            return np.asarray(t.cpu().numpy(), np.float32)

        return self.decode_peaks(ys.cpu().numpy(), xs.cpu().numpy(), host(heat[0, ys, xs]),
                                 host(scale[:, ys, xs]), host(offset[:, ys, xs]),
                                 host(lms[:, ys, xs]))
