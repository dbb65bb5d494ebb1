"""Refinement on the model's device, from the frames the batch stage uploaded.

Only the crops' small output maps come back to be decoded. Crops of one size from frames
of one size (in a crowd most faces are small and get the same native window) are cut with
one gather and resized with one call, not face by face. Windows are not shared between
faces here: every window keeps one of two input sizes, for which the model is warmed up
(and its CUDA graphs captured) once, where a shared window of a new size would cost
cuDNN ~1 s live.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stream_gate.geometry import group_by
from stream_gate.runtime import DeviceModel
from stream_gate.runtime.cuda_graphs import MAX_BATCH
from stream_gate.runtime.torch_ops import resize_like_opencv
from stream_gate.stages.detect.base import FaceDetector
from stream_gate.stages.refine.host import Refiner
from stream_gate.stages.refine.windows import Job, Planner, Window, by_output
from stream_gate.types import Detections, FrameBatch


class DeviceRefiner(Refiner):
    """:class:`Refiner` with its windows cut, resized and run on the device."""

    def __init__(self, codec: FaceDetector, model: DeviceModel, planner: Planner) -> None:
        super().__init__(codec, planner)
        self.model = model
        for out in (planner.size, planner.small):  # both input sizes at once: no stall later
            model.warm((3, out, out), MAX_BATCH)

    def refine(self, batch: FrameBatch, jobs: Sequence[Job]) -> list[Detections]:
        frames = batch.device
        if frames is None:
            raise ValueError("a device refiner needs the batch's frames on its device")
        if not jobs:
            return []
        windows = self.planner.plan(jobs)
        found = [Detections.empty()] * len(jobs)
        for (out_h, out_w), idx in by_output(windows).items():  # a batch per input size
            x = torch.empty((len(idx), 3, out_h, out_w), device=self.model.device,
                            dtype=self.model.dtype)
            slot = {i: n for n, i in enumerate(idx)}
            cuts = group_by(idx, lambda i: (tuple(frames[jobs[i][0]].shape), windows[i].w,
                                            windows[i].h))  # frame size, window size
            for members in cuts.values():
                x[[slot[i] for i in members]] = self._cut(
                    frames, [jobs[i][0] for i in members], [windows[i] for i in members]
                ).to(x.dtype)
            heads = [h.cpu().numpy() for h in self.model.infer_tensor(x)]
            for n, i in enumerate(idx):
                found[i] = self.pick(heads, n, batch, jobs[i], windows[i])
        return found

    def _cut(self, frames: Sequence[torch.Tensor], which: Sequence[int],
             windows: Sequence[Window]) -> torch.Tensor:
        """The ``windows`` (all of one size and input size) of the same-size frames
        ``which``, black outside the frame as the host path pads, at the detector's input
        size: n×3×out_h×out_w, the detector's colour order."""
        first = windows[0]
        unique = list(dict.fromkeys(which))
        slot = {fi: n for n, fi in enumerate(unique)}
        stack = torch.stack([frames[fi] for fi in unique])  # f × H × W × 3, uint8
        dev, (h, w) = stack.device, stack.shape[1:3]
        rows = torch.tensor([win.y0 for win in windows], device=dev)[:, None] \
            + torch.arange(first.h, device=dev)
        cols = torch.tensor([win.x0 for win in windows], device=dev)[:, None] \
            + torch.arange(first.w, device=dev)
        inside = (((rows >= 0) & (rows < h))[:, :, None]
                  & ((cols >= 0) & (cols < w))[:, None, :])
        pick = torch.tensor([slot[fi] for fi in which], device=dev)[:, None, None]
        px = stack[pick, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
        x = (px * inside[..., None]).permute(0, 3, 1, 2).float()
        x = resize_like_opencv(x, first.out_h, first.out_w)
        return x.flip(1) if self.codec.rgb else x
