"""Training loops: ``distill`` (regress a frozen teacher's CR) and ``joint`` (CR-FIQA).

Both save ``last.pt`` after every epoch (model, optimiser, schedule, epoch, history)
and ``best.pt`` at the best validation figure; ``--resume`` continues from ``last.pt``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from stream_gate.stages.align_score.learned import Guidance, to_model_input
from trainer.data import load_prepared
from trainer.degrade import random_degradation
from trainer.degrep import DegradationPairs, info_nce
from trainer.distill import DistillSet
from trainer.jitter import jitter_batch
from trainer.nets import ArcFaceHead, QualityNet, cr_from_cosines


@dataclass
class TrainConfig:
    mode: str = "distill"
    backbone: str = "mobilefacenet-s"
    emb_dim: int = 128
    epochs: int = 8
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    alpha: float = 10.0
    seed: int = 0
    align_jitter_px: float = 0.0  # landmark noise at template scale: σ ~ U(0, this); 0 = off
    threads: int = 0
    max_steps: int | None = None  # stop early (smoke tests)
    real: str | None = None  # a `real-data` folder trained on beside the LFW set
    real_share: float = 0.25  # its share of each epoch's samples (oversampled to it)
    landmark_sigma_px: float | None = None  # landmark guidance: the 4th channel's σ
    size_input: bool = False  # the size plane: how many frame pixels the crop stood for
    aux_weight: float = 0.0  # the degradation representation's InfoNCE (0: off)
    aux_pairs: int = 8  # its pairs per step (2 views each)
    aux_dim: int = 64
    aux_tau: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def guidance(self) -> Guidance:
        """The input planes beside RGB this configuration trains with."""
        return Guidance(self.landmark_sigma_px, self.size_input)


def _batch_tensor(crops: npt.NDArray[np.uint8], flip: npt.NDArray[np.bool_] | None,
                  guide: npt.NDArray[np.float32] | None = None) -> torch.Tensor:
    """The model input of a batch; ``guide``: the guidance planes (landmark map, size),
    flipped with the picture."""
    x = to_model_input(crops)
    if guide is not None:
        x = np.concatenate([x, guide], axis=1)
    if flip is not None and flip.any():
        x[flip] = x[flip][..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(x))


def guide_of(data: DistillSet, idx: npt.NDArray[np.intp], guidance: Guidance
             ) -> npt.NDArray[np.float32] | None:
    """The guidance planes of ``data``'s samples ``idx`` (None for plain RGB models)."""
    return guidance.planes(_known(data.landmarks)[idx], _known(data.size_factor)[idx])


def spearman(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def predict(model: QualityNet, data: DistillSet | npt.NDArray[np.uint8],
            guidance: Guidance | None = None, batch: int = 256) -> npt.NDArray[np.float32]:
    """Raw predicted CR of every sample (guided models need a DistillSet)."""
    crops = data.crops if isinstance(data, DistillSet) else data
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(crops), batch):
            idx = np.arange(s, min(s + batch, len(crops)))
            guide = guide_of(data, idx, guidance) \
                if guidance is not None and isinstance(data, DistillSet) else None
            x = _batch_tensor(np.asarray(crops[s : s + batch]), None, guide)
            out.append(model(x)[1].numpy())
    return np.concatenate(out).astype(np.float32)


class _Checkpoints:
    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out

    def save(self, name: str, state: dict[str, Any]) -> None:
        tmp = self.out / f"{name}.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / f"{name}.pt")

    def load_last(self) -> dict[str, Any] | None:
        p = self.out / "last.pt"
        return torch.load(p, weights_only=False) if p.exists() else None


def _setup(cfg: TrainConfig) -> QualityNet:
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return QualityNet(cfg.backbone, cfg.emb_dim, cfg.guidance.channels,
                      cfg.aux_dim if cfg.aux_weight > 0 else 0)


def with_real(lfw: DistillSet, real: DistillSet, share: float) -> DistillSet:
    """The LFW set and the real set together, the real samples repeated so that they make
    up about ``share`` of the whole (the real set is small; repeats see new flips and
    jitter). Real identities are numbered after LFW's."""
    if not 0 < share < 1:
        raise SystemExit(f"--real-share {share}: must be between 0 and 1")
    reps = max(1, round(share * len(lfw.cr) / ((1 - share) * len(real.cr))))
    idx = np.tile(np.arange(len(real.cr)), reps)
    offset = int(lfw.identity.max()) + 1
    return DistillSet(
        np.concatenate([np.asarray(lfw.crops), np.asarray(real.crops)[idx]]),
        np.concatenate([lfw.cr, real.cr[idx]]), np.concatenate([lfw.ccs, real.ccs[idx]]),
        np.concatenate([lfw.nnccs, real.nnccs[idx]]),
        np.concatenate([lfw.source, -1 - real.source[idx]]),  # negative: not an LFW photo
        np.concatenate([lfw.identity, offset + real.identity[idx]]),
        np.concatenate([lfw.degraded, real.degraded[idx]]),
        np.concatenate([_known(lfw.landmarks), _known(real.landmarks)[idx]]),
        np.concatenate([_known(lfw.size_factor), _known(real.size_factor)[idx]]))


def _known(a: npt.NDArray[np.float32] | None) -> npt.NDArray[np.float32]:
    if a is None:  # DistillSet fills both in __post_init__
        raise AssertionError("a DistillSet without landmarks or size factors")
    return a


def train_distill(data: Path, out: Path, cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Regress the teacher's CR from ``data/train.*`` with ``data/val.*`` for selection."""
    tr, va = DistillSet.load(data / "train"), DistillSet.load(data / "val")
    if cfg.real is not None:
        tr = with_real(tr, DistillSet.load(Path(cfg.real) / "real"), cfg.real_share)
    if cfg.guidance.channels > 3 and not (
            np.isfinite(_known(tr.landmarks)).all() and np.isfinite(_known(va.landmarks)).all()):
        raise SystemExit(f"{data}: made before landmarks were kept; run distill-data again "
                         "for a landmark-guided or size-input model")
    train_crops = np.asarray(tr.crops)  # into memory: random access every step
    model = _setup(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(tr.cr) / cfg.batch)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                pct_start=0.1)
    loss_fn = nn.SmoothL1Loss(beta=0.5)
    ck = _Checkpoints(out)
    history: list[dict[str, float]] = []
    start_epoch, best = 0, -1.0
    if resume and (state := ck.load_last()) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        # Rebuild the schedule for this run's length (--epochs may have grown) and move
        # it to where training stopped.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(min(start_epoch * steps_per_epoch, total - 1)):
                sched.step()
        print(f"resumed after epoch {state['epoch'] + 1}")
    target = torch.from_numpy(tr.cr)
    rng = np.random.default_rng(cfg.seed)
    aux = DegradationPairs(tr, cfg.aux_pairs) if cfg.aux_weight > 0 else None
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = rng.permutation(len(tr.cr))
        t0, running = time.perf_counter(), 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}")
        for b in bar:
            idx = np.sort(order[b * cfg.batch : (b + 1) * cfg.batch])
            crops = jitter_batch(train_crops[idx], cfg.align_jitter_px, rng)
            x = _batch_tensor(crops, rng.random(len(idx)) < 0.5,
                              guide_of(tr, idx, cfg.guidance))
            pred = model(x)[1]
            loss = cfg.alpha * loss_fn(pred, target[idx])
            if aux is not None:
                ab = aux.draw(rng)
                guide = cfg.guidance.planes(ab.landmarks, ab.size_factor)
                codes = model.degradation_code(model(_batch_tensor(ab.crops, ab.flip, guide))[0])
                loss = loss + cfg.aux_weight * info_nce(codes, cfg.aux_tau)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            value = float(loss.detach())
            running = 0.98 * running + 0.02 * value if b else value
            bar.set_postfix(loss=f"{running:.4f}")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        val_pred = predict(model, va, cfg.guidance)
        rec = {"epoch": epoch + 1, "train_loss": running, "epoch_s": time.perf_counter() - t0,
               "val_mae": float(np.abs(val_pred - va.cr).mean()),
               "val_spearman": spearman(val_pred, va.cr)}
        history.append(rec)
        print(json.dumps(rec))
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                 "best": best,
                 "history": history, "config": asdict(cfg)}
        if rec["val_spearman"] > best:
            best = state["best"] = rec["val_spearman"]
            ck.save("best", state)
        ck.save("last", state)
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
    return {"best_val_spearman": best, "history": history}


def train_joint(prepared: Path, out: Path, cfg: TrainConfig, resume: bool = False
                ) -> dict[str, Any]:
    """CR-FIQA as published: ArcFace (s=64, m=0.5) + α·SmoothL1 on CR from live centres.

    For a large identity dataset and a GPU; here it runs on the prepared crops of the
    training identities with random degradations applied on the fly.
    """
    if cfg.guidance.channels > 3 or cfg.real is not None or cfg.aux_weight:
        raise SystemExit("--landmarks, --size-input, --real and --aux-weight are for "
                         "--mode distill")
    crops, samples = load_prepared(prepared)
    train = [s for s in samples if s.split == "train"]
    names = sorted({s.identity for s in train})
    label = {n: i for i, n in enumerate(names)}
    idx = np.array([s.index for s in train])
    labels = np.array([label[s.identity] for s in train])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = _setup(cfg).to(device)
    head = ArcFaceHead(cfg.emb_dim, len(names)).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    ce, reg = nn.CrossEntropyLoss(), nn.SmoothL1Loss(beta=0.5)
    ck = _Checkpoints(out)
    start_epoch, history = 0, []
    if resume and (state := ck.load_last()) is not None:
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        start_epoch, history = state["epoch"] + 1, state["history"]
    rng = np.random.default_rng(cfg.seed)
    step = 0
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = rng.permutation(len(idx))
        bar = tqdm(range(0, len(order), cfg.batch), desc=f"epoch {epoch + 1}/{cfg.epochs}")
        for b in bar:
            sel = order[b : b + cfg.batch]
            imgs = np.stack([
                random_degradation(np.asarray(crops[idx[i]]), int(rng.integers(1 << 31)),
                                   clean_prob=0.5)[0] for i in sel])
            imgs = jitter_batch(imgs, cfg.align_jitter_px, rng)
            x = _batch_tensor(imgs, rng.random(len(sel)) < 0.5).to(device)
            y = torch.from_numpy(labels[sel]).to(device)
            emb, cr_pred = model(x)
            logits, cos = head(emb, y)
            cr_target = cr_from_cosines(cos.detach(), y)
            loss = ce(logits, y) + cfg.alpha * reg(cr_pred, cr_target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.set_postfix(loss=f"{float(loss):.3f}")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        history.append({"epoch": epoch + 1, "loss": float(loss)})
        state = {"model": model.state_dict(), "head": head.state_dict(),
                 "opt": opt.state_dict(), "epoch": epoch, "history": history,
                 "config": asdict(cfg), "best": -1.0}
        ck.save("last", state)
        ck.save("best", state)
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
    return {"history": history}
