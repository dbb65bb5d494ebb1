"""Export: checkpoint -> ONNX (dynamic batch) + parity check + calibration + manifest.

Calibration gives the 0–100 score a meaning an operator can use: ``quality`` ≈ 100 ×
the probability that the teacher recogniser verifies this crop against the person's
other photos at FMR = 1e-2, fitted by isotonic regression of that outcome on the raw
predicted CR over the validation identities. A 10 % share of the raw score's rank keeps
the map strictly increasing, so better raw scores never tie.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnx.compose
import torch

from stream_gate.runtime.ort import OrtModel
from stream_gate.stages.align_score.learned import Guidance
from trainer.distill import DistillSet
from trainer.nets import QualityNet, QualityOnly, count_macs
from trainer.recognisers import OnnxRecogniser
from trainer.train import _batch_tensor, guide_of, predict


def isotonic(x: npt.NDArray[np.floating], y: npt.NDArray[np.floating]
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pool-adjacent-violators fit of non-decreasing y on x; returns (x sorted, fit)."""
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, np.float64)[order], np.asarray(y, np.float64)[order]
    vals: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for v in ys:
        vals.append(float(v))
        weights.append(1.0)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = weights[-2] + weights[-1]
            vals[-2] = (vals[-2] * weights[-2] + vals[-1] * weights[-1]) / w
            weights[-2] = w
            sizes[-2] += sizes[-1]
            vals.pop()
            weights.pop()
            sizes.pop()
    fit = np.repeat(vals, sizes)
    return xs, fit


def fit_calibration(raw: npt.NDArray[np.floating], success: npt.NDArray[np.bool_],
                    knots: int = 48) -> tuple[list[float], list[float]]:
    """Knots of a strictly increasing map raw -> 0–100 (see module docstring)."""
    xs, prob = isotonic(raw, success.astype(np.float64))
    rank = np.arange(len(xs)) / max(len(xs) - 1, 1)
    q = 100.0 * (0.9 * prob + 0.1 * rank)
    picks = np.unique(np.linspace(0, len(xs) - 1, knots).round().astype(int))
    kx, kq = xs[picks], q[picks]
    keep = np.concatenate([[True], np.diff(kx) > 1e-9])
    kx, kq = kx[keep], np.maximum.accumulate(kq[keep])
    return [round(float(v), 6) for v in kx], [round(float(v), 3) for v in kq]


def threshold_at_fmr(impostor: npt.NDArray[np.floating], fmr: float) -> float:
    """Similarity threshold above which a fraction ``fmr`` of impostor scores lie."""
    return float(np.quantile(impostor, 1.0 - fmr))


def export(checkpoint: Path, data: Path, teacher_path: Path, out: Path, name: str,
           version: str) -> dict[str, Any]:
    state = torch.load(checkpoint, weights_only=False)
    cfg = state["config"]
    sigma = cfg.get("landmark_sigma_px")
    guidance = Guidance(sigma, bool(cfg.get("size_input", False)))
    channels = guidance.channels
    net = QualityNet(cfg["backbone"], cfg["emb_dim"], channels,
                     cfg.get("aux_dim", 0) if cfg.get("aux_weight") else 0)
    net.load_state_dict(state["model"])
    net.eval()
    wrapped = QualityOnly(net).eval()
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"
    torch.onnx.export(
        wrapped, (torch.zeros(2, channels, 112, 112),), str(onnx_path), input_names=["input"],
        output_names=["cr"], dynamic_axes={"input": {0: "B"}, "cr": {0: "B"}},
        opset_version=17, dynamo=False,
    )
    blob = onnx_path.read_bytes()

    va = DistillSet.load(data / "val")
    val_crops = np.asarray(va.crops)
    torch_raw = predict(net, va, guidance)
    ort = OrtModel(blob, name)
    ort_raw = np.concatenate([
        np.asarray(ort.infer(np.ascontiguousarray(
            _batch_tensor(val_crops[s : s + 256], None,
                          guide_of(va, np.arange(s, min(s + 256, len(val_crops))), guidance))
            .numpy()))[0]).reshape(-1)
        for s in range(0, len(val_crops), 256)])
    parity = float(np.abs(ort_raw - torch_raw).max())

    # Verification outcome of each validation sample at FMR 1e-2 against its identity's
    # other photos (CCS, leave-one-out), threshold from clean impostor photo pairs.
    teacher = OnnxRecogniser(teacher_path)
    clean = ~va.degraded
    emb = teacher.embed(val_crops[clean])
    ident = va.identity[clean]
    sims = emb @ emb.T
    iu = np.triu_indices(len(emb), 1)
    impostor = sims[iu][ident[iu[0]] != ident[iu[1]]]
    thr = threshold_at_fmr(impostor, 1e-2)
    success = va.ccs >= thr
    kx, kq = fit_calibration(ort_raw, success)

    history = state.get("history", [])
    summary_path = data / "summary.json"
    manifest = {
        "name": name,
        "version": version,
        "file": onnx_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "architecture": cfg["backbone"],
        "parameters": int(sum(p.numel() for p in wrapped.parameters())),
        "multiply_adds": int(count_macs(wrapped, channels=channels)),
        "input": {"name": "input", "size": 112, "layout": "NCHW", "colour": "RGB",
                  "channels": channels,
                  "alignment": "ArcFace 5-point template, 112x112",
                  "normalisation": {"mean": 0.5, "std": 0.5, "formula": "(x/255 - mean)/std"},
                  **({} if sigma is None else {"landmark_map": {
                      "sigma_px": sigma,
                      "what": "channel 4: the 5 detector landmarks in the crop, Gaussians "
                              "of sigma_px source-frame pixels (1-16 crop px), max 1"}}),
                  **({} if not guidance.size_plane else {"size_plane": {
                      "what": f"channel {channels}: constant, log2(frame px per crop px) "
                              "clipped to +-3, divided by 3"}})},
        "output": {"name": "cr", "meaning": "predicted certainty ratio CCS/(NNCCS+1+eps)"},
        "calibration": {
            "method": "isotonic P(teacher verifies at FMR 1e-2) on validation, 10% rank blend",
            "fmr": 1e-2, "teacher_threshold": round(thr, 5),
            "validation_success_rate": round(float(success.mean()), 4),
            "raw": kx, "quality": kq,
        },
        "training": {
            "mode": cfg["mode"], "teacher": teacher_path.name,
            "data": json.loads(summary_path.read_text()) if summary_path.exists() else None,
            "epochs": len(history), "final": history[-1] if history else None,
            "landmark_sigma_px": sigma, "size_input": guidance.size_plane,
            "real": cfg.get("real"),
            "aux_weight": cfg.get("aux_weight", 0.0),
            "real_share": cfg.get("real_share") if cfg.get("real") else None,
            "command": cfg.get("command") or (
                "python -m trainer prepare && python -m trainer distill-data && "
                "python -m trainer train --mode distill && python -m trainer export"),
        },
        "export": {"onnx_opset": 17, "max_abs_diff_vs_torch": parity,
                   "parity_samples": len(val_crops)},
    }
    (out / f"{name}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {"onnx": str(onnx_path), "bytes": len(blob), "parity_max_abs_diff": parity,
            "threshold": thr, "success_rate": float(success.mean()),
            "parameters": manifest["parameters"], "multiply_adds": manifest["multiply_adds"]}


def merge_signature(quality: onnx.ModelProto, signature: onnx.ModelProto) -> onnx.ModelProto:
    """One graph, one input, two outputs: the quality model's ``cr`` untouched and the
    signature student's ``signature`` (its names prefixed so they cannot clash)."""
    q_in = [i.name for i in quality.graph.input]
    s_in = [i.name for i in signature.graph.input]
    if len(q_in) != 1 or s_in != q_in or len(quality.graph.output) != 1:
        raise ValueError(f"expected one shared input and one quality output, got {q_in}, "
                         f"{s_in}, {[o.name for o in quality.graph.output]}")
    sig = onnx.compose.add_prefix_graph(signature.graph, "signature/", rename_inputs=False,
                                        rename_outputs=False)
    graph = onnx.helper.make_graph(
        list(quality.graph.node) + list(sig.node), "cr-fiqa-with-signature",
        list(quality.graph.input), list(quality.graph.output) + list(sig.output),
        list(quality.graph.initializer) + list(sig.initializer))
    merged = onnx.helper.make_model(graph, opset_imports=list(quality.opset_import),
                                    producer_name="stream-gate trainer")
    merged.ir_version = quality.ir_version
    onnx.checker.check_model(merged)
    return merged


def export_v2(quality_manifest: Path, student: Path, prepared: Path, out: Path, name: str,
              version: str) -> dict[str, Any]:
    """The quality model of ``quality_manifest`` with a signature student (``python -m
    trainer signature``) as its second output: ONNX, parity checks, manifest. The
    ``cr`` output and the calibration are the quality model's, unchanged."""
    from stream_gate.stages.align_score.learned import Manifest, to_model_input
    from trainer.data import load_prepared
    from trainer.signature import load_student

    base = Manifest.load(quality_manifest)
    quality = onnx.load(str(base.file))
    net = load_student(student)
    student_onnx = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(2, 3, 112, 112),), student_onnx,
                      input_names=["input"], output_names=["signature"],
                      dynamic_axes={"input": {0: "B"}, "signature": {0: "B"}},
                      opset_version=17, dynamo=False)
    merged = merge_signature(quality, onnx.load_from_string(student_onnx.getvalue()))
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"
    onnx.save(merged, str(onnx_path))
    blob = onnx_path.read_bytes()

    crops, samples = load_prepared(prepared)
    pick = [s.index for s in samples if s.split == "val"][:512]
    x = to_model_input(np.asarray(crops[pick]), base.mean, base.std)
    got = OrtModel(blob, name).infer(x)
    cr_v1 = np.asarray(OrtModel(base.file.read_bytes(), "v1").infer(x)[0]).reshape(-1)
    with torch.no_grad():
        sig_torch = net(torch.from_numpy(x)).numpy()
    cr_diff = float(np.abs(np.asarray(got[0]).reshape(-1) - cr_v1).max())
    sig_diff = float(np.abs(np.asarray(got[1]) - sig_torch).max())
    if cr_diff > 1e-5:
        raise SystemExit(f"the merged model's cr differs from the quality model's by {cr_diff}")

    summary_path = student.parent / "signature.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    n_sig = int(sum(p.numel() for p in net.parameters()))
    manifest = dict(base.raw)
    manifest.update({
        "name": name, "version": version, "file": onnx_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "architecture": f"{base.raw.get('architecture')} + signature mobilefacenet-s "
                        f"{'x'.join(str(w) for w in net.width)}",
        "parameters": int(base.raw.get("parameters", 0)) + n_sig,
        "multiply_adds": int(base.raw.get("multiply_adds", 0)) + int(count_macs(net)),
        "signature": {
            "name": "signature", "index": 1, "dim": int(net.emb_dim),
            "meaning": "a student of the teacher's embedding (unnormalised): the track "
                       "consensus compares crops of one person with it "
                       "(select.consensus_weight)",
            "teacher": summary.get("teacher"),
            "teacher_sha256": summary.get("teacher_sha256"),
            "training": {k: summary.get(k) for k in
                         ("device", "steps", "batch", "samples", "wall_s", "lr",
                          "real_share", "crops")},
            "student": {"width": [int(w) for w in net.width], "parameters": n_sig},
            "command": summary.get("command") or (
                "python -m trainer signature-data && python -m trainer signature && "
                "python -m trainer export-v2"),
            "parity_max_abs_diff_vs_torch": sig_diff,
        },
        "export": {**base.raw.get("export", {}), "merged_from": base.file.name,
                   "cr_max_abs_diff_vs_quality_model": cr_diff},
    })
    (out / f"{name}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {"onnx": str(onnx_path), "bytes": len(blob), "cr_diff": cr_diff,
            "signature_parity": sig_diff, "parameters": manifest["parameters"],
            "multiply_adds": manifest["multiply_adds"]}
