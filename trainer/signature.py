"""``signature-data`` and ``signature``: the consensus signature, a student of the teacher.

Why: the track consensus (``select.consensus_weight``) ranks one person's crops by how
well each agrees with the rest of the track. Measured with a recogniser's embedding the
agreement captures far more of the real-video benchmark's headroom than with the free
edge signature (docs/decisions/003, stop 27); a small network trained to reproduce the
teacher's embedding gets part of that for a fraction of the teacher's cost, and rides as
a second output of the quality model (cr-fiqa-s v2, :func:`trainer.export.export_v2`).

Training is online distillation: every batch is fresh degradations
(:mod:`trainer.degrade`, 30 % left clean) of LFW *training* identities' crops and of the
crops of the clip list's ``train`` clips (``real-data``; never dev or test), the teacher
embeds the very same pixels, the loss is 1 − cosine. Several students (widths) learn
from the same batches, so one run compares them. The schedule is by wall-clock time
(``--minutes``), so the same command fits a lent GPU's slot or a CPU's afternoon.

``signature-data`` packs the crops as JPEG (quality 95) into one file small enough to
carry to a lent GPU machine; ``signature`` needs only that pack, the teacher's ONNX file,
PyTorch, OpenCV and numpy.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trainer.degrade import random_degradation
from trainer.nets import MobileFaceNetS, count_macs

WIDTHS: dict[str, tuple[int, int, int, int]] = {
    "s": (24, 32, 64, 96),     # v1's own size: 0.14 M parameters, 28 M multiply-adds
    "m": (32, 48, 96, 128),    # 0.25 M, 56 M
}
EMB_DIM = 128  # the teacher's


@dataclass(frozen=True, slots=True)
class Pack:
    """Crops as JPEG bytes (``blob[offsets[i]:offsets[i+1]]``); ``real``: from video."""

    blob: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    real: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.real)

    def crop(self, i: int) -> npt.NDArray[np.uint8]:
        buf = self.blob[int(self.offsets[i]) : int(self.offsets[i + 1])]
        img: npt.NDArray[np.uint8] = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, blob=self.blob, offsets=self.offsets, real=self.real)

    @staticmethod
    def load(path: Path) -> Pack:
        d = np.load(path)
        return Pack(d["blob"], d["offsets"], d["real"])

    @staticmethod
    def of(crops: list[npt.NDArray[np.uint8]], real: list[bool], quality: int = 95) -> Pack:
        bufs = []
        for c in crops:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(c),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            bufs.append(buf.reshape(-1))
        offsets = np.zeros(len(bufs) + 1, np.int64)
        offsets[1:] = np.cumsum([len(b) for b in bufs])
        blob = np.concatenate(bufs) if bufs else np.zeros(0, np.uint8)
        return Pack(blob.astype(np.uint8), offsets, np.asarray(real, bool))


def build_pack(prepared: Path, real: Path | None) -> Pack:
    """LFW training identities' crops (``prepare``'s folder) and the real set's crops."""
    from trainer.data import load_prepared
    from trainer.distill import DistillSet

    crops, samples = load_prepared(prepared)
    lfw = [np.asarray(crops[s.index]) for s in samples if s.split == "train"]
    video: list[npt.NDArray[np.uint8]] = []
    if real is not None:
        video = list(np.asarray(DistillSet.load(real / "real").crops))
    return Pack.of(lfw + video, [False] * len(lfw) + [True] * len(video))


class OnlineCrops(IterableDataset[torch.Tensor]):
    """Endless uint8 crops (H×W×3, BGR): a ``real_share`` of them from video, each
    degraded (30 % left clean) and mirrored at random, seeded per worker."""

    def __init__(self, pack: Pack, real_share: float, seed: int) -> None:
        self.pack, self.real_share, self.seed = pack, real_share, seed
        self.lfw = np.flatnonzero(~pack.real)
        self.video = np.flatnonzero(pack.real)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        wid = 0 if info is None else info.id
        rng = np.random.default_rng((self.seed, wid))
        while True:
            pool = (self.video if len(self.video) and rng.random() < self.real_share
                    else self.lfw)
            img = self.pack.crop(int(pool[rng.integers(len(pool))]))
            img, _ = random_degradation(img, int(rng.integers(2**62)), clean_prob=0.3)
            if rng.random() < 0.5:
                img = img[:, ::-1]
            yield torch.from_numpy(np.ascontiguousarray(img))


def _inputs(batch: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 B×H×W×3 BGR -> float B×3×H×W RGB, (x − mean)/std."""
    x = batch.flip(-1).permute(0, 3, 1, 2).float()
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def teacher_graph(path: Path, device: torch.device) -> torch.nn.Module:
    """The teacher's ONNX graph as a PyTorch module (the product's torch engine)."""
    from stream_gate.runtime.torch_engine import OnnxGraph
    from trainer.recognisers import dynamic_batch

    return OnnxGraph(dynamic_batch(onnx.load(str(path))), path.stem).to_device(
        device, torch.float32)


def _device(name: str) -> torch.device:
    """``auto``: CUDA where PyTorch sees a GPU, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def lr_scale(frac: float, warm_up: float = 0.03) -> float:
    """The learning rate's share at ``frac`` of the time budget: a linear warm-up, then a
    cosine down to 0 at the end."""
    return min(1.0, frac / warm_up) * 0.5 * (1 + math.cos(math.pi * frac))


def _distil_step(net: MobileFaceNetS, opt: torch.optim.Optimizer, x: torch.Tensor,
                 target: torch.Tensor, lr: float) -> float:
    """One step of 1 − cosine to the teacher's (unit) embeddings; returns the loss."""
    for g in opt.param_groups:
        g["lr"] = lr
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        emb = net(x)
    loss = 1.0 - F.cosine_similarity(emb.float(), target, dim=1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def train_signature(pack: Pack, teacher: Path, out: Path, minutes: float,
                    students: tuple[str, ...] = ("s", "m"), batch: int = 256,
                    lr: float = 2e-3, real_share: float = 0.25, workers: int = 2,
                    device: str = "auto", seed: int = 0, max_steps: int | None = None
                    ) -> dict[str, Any]:
    """Train each of ``students`` on the same online batches for ``minutes`` of wall
    clock (cosine schedule over that time, 3 % warm-up); writes
    ``out/signature-<name>.pt`` and ``out/signature.json``; returns the summary."""
    dev = _device(device)
    torch.manual_seed(seed)
    teach = teacher_graph(teacher, dev)
    nets = {k: MobileFaceNetS(EMB_DIM, WIDTHS[k]).to(dev, memory_format=torch.channels_last)
            for k in students}
    opts = {k: torch.optim.AdamW(n.parameters(), lr=lr, weight_decay=5e-4)
            for k, n in nets.items()}
    loader = DataLoader(OnlineCrops(pack, real_share, seed), batch_size=batch,
                        num_workers=workers, pin_memory=dev.type == "cuda",
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    budget = minutes * 60.0
    t0 = time.perf_counter()
    last_log, step = t0, 0
    losses = {k: 0.0 for k in nets}
    for raw in loader:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget or (max_steps is not None and step >= max_steps):
            break
        raw = raw.to(dev, non_blocking=True)
        with torch.no_grad():
            target = F.normalize(teach(_inputs(raw, 127.5, 128.0))[0].float(), dim=1)
        x = _inputs(raw, 127.5, 127.5)  # v1's normalisation: the student shares its input
        for k, net in nets.items():
            value = _distil_step(net, opts[k], x, target, lr * lr_scale(elapsed / budget))
            losses[k] = 0.98 * losses[k] + 0.02 * value if step else value  # running mean
        step += 1
        now = time.perf_counter()
        if now - last_log > 30 or step == 1:
            last_log = now
            rate = step * batch / (now - t0)
            print(f"signature: step {step}, {now - t0:.0f}/{budget:.0f} s, {rate:.0f} crops/s, "
                  + ", ".join(f"{k} loss {v:.4f}" for k, v in losses.items()), flush=True)
    wall = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "teacher": teacher.name,
        "teacher_sha256": hashlib.sha256(teacher.read_bytes()).hexdigest(),
        "device": str(dev), "steps": step, "batch": batch,
        "samples": step * batch, "wall_s": round(wall, 1), "lr": lr,
        "real_share": real_share, "crops": {"lfw": int((~pack.real).sum()),
                                            "video": int(pack.real.sum())},
        "students": {}}
    for k, net in nets.items():
        net.eval().float().cpu()
        torch.save({"width": WIDTHS[k], "emb_dim": EMB_DIM, "state_dict": net.state_dict()},
                   out / f"signature-{k}.pt")
        summary["students"][k] = {
            "width": WIDTHS[k], "final_loss": round(losses[k], 5),
            "parameters": sum(p.numel() for p in net.parameters()),
            "multiply_adds": count_macs(net)}
    (out / "signature.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def load_student(path: Path) -> MobileFaceNetS:
    """A trained signature student (``signature-<name>.pt``), in eval mode on the CPU."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net = MobileFaceNetS(int(ckpt["emb_dim"]), tuple(ckpt["width"]))
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()
