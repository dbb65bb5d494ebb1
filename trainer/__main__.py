"""``python -m trainer prepare | distill-data | train | export | evaluate | evaluate-video |
evaluate-emissions | real-data | signature-data | signature | export-v2 | quantize-detector``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer.degrade import FAMILIES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


TEACHER = SHARED / "models" / "mobilefacenet_128d.onnx"


def _clips(p: argparse.ArgumentParser) -> None:
    """The options of the commands that run the pipeline on the clip list."""
    p.add_argument("--clips", type=Path, default=Path(__file__).parent / "clips.toml",
                   help="clip list: [[clips]] file, identity, split (train|dev|test)")
    p.add_argument("--media", type=Path, default=SHARED / "media",
                   help="folder the clip list's files are relative to")
    p.add_argument("--fps", type=float, default=10.0, help="frames analysed per second")
    p.add_argument("--segment-s", type=float, default=1.5)


def _judges(p: argparse.ArgumentParser) -> None:
    """The models under test and the recognisers that judge them (the benchmarks)."""
    p.add_argument("--model", action="append",
                   help="quality model under test: shipped name or manifest path; repeat "
                        "to compare several side by side (default: cr-fiqa-s)")
    p.add_argument("--teacher", type=Path, default=TEACHER)
    p.add_argument("--comparator", action="append", choices=["teacher", "dlib"],
                   help="repeat for several (default: both)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    pr = sub.add_parser("prepare", help="detect + align an identity-folder image set")
    pr.add_argument("--images", type=Path, default=SHARED / "lfw" / "images")
    pr.add_argument("--out", type=Path, default=Path("work/lfw"))
    pr.add_argument("--val-fraction", type=float, default=0.2)
    pr.add_argument("--max-per-identity", type=int, default=40)

    dd = sub.add_parser("distill-data", help="degraded samples + teacher CR targets")
    dd.add_argument("--prepared", type=Path, default=Path("work/lfw"))
    dd.add_argument("--teacher", type=Path, default=TEACHER)
    dd.add_argument("--out", type=Path, default=Path("work/distill"))
    dd.add_argument("--k", type=int, default=3, help="degraded copies per photo")
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--exclude", choices=sorted(FAMILIES),
                    help="leave one degradation family out of training (then evaluate "
                         "--protocol hard --only it)")
    dd.add_argument("--hold-out-test", action="store_true",
                    help="leave the test half of the validation identities out (they stay "
                         "unseen for `evaluate --protocol hard`)")

    tr = sub.add_parser("train", help="train a quality model")
    tr.add_argument("--mode", choices=["distill", "joint"], default="distill")
    tr.add_argument("--data", type=Path, default=Path("work/distill"),
                    help="distill: distill-data folder; joint: prepared folder")
    tr.add_argument("--out", type=Path, default=Path("work/run"))
    tr.add_argument("--backbone", default="mobilefacenet-s",
                    choices=["mobilefacenet-s", "iresnet18", "iresnet50"])
    tr.add_argument("--emb-dim", type=int, default=128)
    tr.add_argument("--epochs", type=int, default=8)
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--lr", type=float, default=None, help="default 2e-3 distill, 0.1 joint")
    tr.add_argument("--alpha", type=float, default=10.0)
    tr.add_argument("--threads", type=int, default=0)
    tr.add_argument("--align-jitter", type=float, default=0.0,
                    help="train on crops aligned from landmarks off by N(0, σ) px, "
                         "σ ~ U(0, this) at template scale (e.g. 2; 0: off, as shipped)")
    tr.add_argument("--max-steps", type=int, default=None)
    tr.add_argument("--real", type=Path, help="a `real-data` folder to train on beside LFW "
                    "(distill mode; DSL-FIQA's dual-set training)")
    tr.add_argument("--landmarks", type=float, metavar="SIGMA_PX",
                    help="landmark guidance: a 4th input channel with the detector's "
                         "landmarks as Gaussians of SIGMA_PX source pixels (e.g. 1.5)")
    tr.add_argument("--size-input", action="store_true",
                    help="one more input channel: how many frame pixels the crop stood for "
                         "(log2), the face size the 112-px crop no longer shows")
    tr.add_argument("--aux-weight", type=float, default=0.0,
                    help="weight of the degradation representation's InfoNCE (same "
                         "degradation on two faces: positive; e.g. 0.1; 0: off)")
    tr.add_argument("--real-share", type=float, default=0.25,
                    help="the real set's share of each epoch (oversampled to it)")
    tr.add_argument("--seed", type=int, default=0,
                    help="weights' initialisation and sample order (several seeds per "
                         "recipe: one run's swing on the video benchmark is as large as "
                         "the effects)")
    tr.add_argument("--resume", action="store_true")

    ex = sub.add_parser("export", help="ONNX export, parity check, calibration, manifest")
    ex.add_argument("--checkpoint", type=Path, default=Path("work/run/best.pt"))
    ex.add_argument("--data", type=Path, default=Path("work/distill"))
    ex.add_argument("--teacher", type=Path, default=TEACHER)
    ex.add_argument("--out", type=Path, default=Path("stream_gate/models"))
    ex.add_argument("--name", default="cr-fiqa-s")
    ex.add_argument("--version", default="1")

    e2 = sub.add_parser("export-v2", help="a quality model with a signature student as its "
                        "second output (ONNX, parity, manifest)")
    e2.add_argument("--quality", type=Path, default=Path("stream_gate/models/cr-fiqa-s.json"),
                    help="the quality model's manifest (its cr output and calibration)")
    e2.add_argument("--student", type=Path, default=Path("work/signature/signature-m.pt"))
    e2.add_argument("--prepared", type=Path, default=Path("work/lfw"))
    e2.add_argument("--out", type=Path, default=Path("stream_gate/models"))
    e2.add_argument("--name", default="cr-fiqa-s-v2")
    e2.add_argument("--version", default="2")
    ev = sub.add_parser("evaluate", help="EDC / pAUC against baselines on held-out identities")
    ev.add_argument("--prepared", type=Path, default=Path("work/lfw"))
    _judges(ev)
    ev.add_argument("--max-per-identity", type=int, default=10)
    ev.add_argument("--k", type=int, default=2, help="degraded copies per photo")
    ev.add_argument("--protocol", choices=["standard", "hard"], default="standard",
                    help="standard: the v1 card's set (severity ≤ 0.6, all validation "
                         "identities); hard: camera degradations at full severity, mixed, 30 %% "
                         "clean, other seeds, the held-out test half of the validation "
                         "identities")
    ev.add_argument("--only", choices=sorted(FAMILIES),
                    help="degrade with this family alone (leave-one-degradation-out test)")
    ev.add_argument("--half", choices=["all", "val", "test"],
                    help="which validation identities (default: the protocol's)")
    ev.add_argument("--out", type=Path, default=Path("work/eval"))
    vv = sub.add_parser("evaluate-video", help="real-video benchmark: each selector's pick "
                        "per 1.5-s segment of a person, judged by recognisers")
    _clips(vv)
    _judges(vv)
    vv.add_argument("--gallery", type=Path,
                    help="photos of the people of gallery clips: DIR/<identity>/*.jpg")
    vv.add_argument("--gallery-min-sim", type=float, default=0.45,
                    help="teacher similarity a track's best crop needs to take a name")
    vv.add_argument("--half", choices=["dev", "test", "both"], default="both",
                    help="report one half only (choose models on dev without seeing test)")
    vv.add_argument("--size-weight", type=float, action="append", default=[],
                    metavar="W", help="also each model fused with the face's size: quality + "
                    "W points per doubling of the box area (repeat for several)")
    vv.add_argument("--consensus-weight", type=float, action="append", default=[],
                    metavar="W", help="also each model fused with the crop's agreement with "
                    "its track: quality + W points per percent (select.consensus_weight)")
    vv.add_argument("--out", type=Path, default=Path("work/eval-video"))
    em = sub.add_parser("evaluate-emissions", help="what the recogniser holds and when: each "
                        "person's crops replayed through the product's selector, policies "
                        "improving and track_end, judged by recognisers")
    _clips(em)
    em.add_argument("--model", default="cr-fiqa-s-v2",
                    help="quality model: shipped name or manifest path")
    em.add_argument("--teacher", type=Path, default=TEACHER)
    em.add_argument("--comparator", action="append", choices=["teacher", "dlib"],
                    help="repeat for several (default: both)")
    em.add_argument("--consensus-weight", type=float, default=3.0,
                    help="select.consensus_weight of the settings with the consensus")
    em.add_argument("--gap-s", type=float, default=1.0,
                    help="a crop's reference leaves out the person's crops this close in time")
    em.add_argument("--half", choices=["dev", "test", "both"], default="both")
    em.add_argument("--out", type=Path, default=Path("work/eval-video"),
                    help="where the pipeline dumps are cached (shared with evaluate-video)")
    rd = sub.add_parser("real-data", help="the real training set: tracked video faces with "
                        "teacher CR targets (leave-segment-out centres)")
    _clips(rd)
    rd.add_argument("--splits", default="train",
                    help="clip-list halves to build from (never 'test': it is the "
                         "benchmark's)")
    rd.add_argument("--prepared", type=Path, default=Path("work/lfw"),
                    help="prepared LFW folder: its training identities are negatives")
    rd.add_argument("--teacher", type=Path, default=TEACHER)
    rd.add_argument("--out", type=Path, default=Path("work/real"))
    sd = sub.add_parser("signature-data", help="pack LFW training crops and the real set's "
                        "crops (JPEG) for `signature`, small enough to carry to a GPU")
    sd.add_argument("--prepared", type=Path, default=Path("work/lfw"))
    sd.add_argument("--real", type=Path, default=Path("work/real-train"),
                    help="a `real-data` folder (train clips only); 'none' for LFW alone")
    sd.add_argument("--out", type=Path, default=Path("work/signature/pack.npz"))
    sg = sub.add_parser("signature", help="train signature students of the teacher's "
                        "embedding (the consensus signature of cr-fiqa-s v2)")
    sg.add_argument("--pack", type=Path, default=Path("work/signature/pack.npz"))
    sg.add_argument("--teacher", type=Path, default=TEACHER)
    sg.add_argument("--out", type=Path, default=Path("work/signature"))
    sg.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget")
    sg.add_argument("--students", default="s,m", help="widths to train side by side: "
                    "s (v1's size), m")
    sg.add_argument("--batch", type=int, default=256)
    sg.add_argument("--lr", type=float, default=2e-3)
    sg.add_argument("--real-share", type=float, default=0.25)
    sg.add_argument("--workers", type=int, default=2, help="degradation worker processes")
    sg.add_argument("--device", default="auto")
    sg.add_argument("--max-steps", type=int, default=None)
    qd = sub.add_parser("quantize-detector", help="int8 CenterFace, calibrated and checked")
    qd.add_argument("--media", type=Path, default=SHARED / "media")
    qd.add_argument("--out", type=Path, default=Path("stream_gate/models/centerface-int8.onnx"))
    qd.add_argument("--min-recall", type=float, default=0.98)
    args = p.parse_args(argv)
    if args.cmd == "real-data":
        from stream_gate.log import setup_logging
        from trainer.realset import build_real, lfw_train_centres, write
        from trainer.recognisers import OnnxRecogniser

        splits = tuple(x.strip() for x in args.splits.split(",") if x.strip())
        if "test" in splits:
            raise SystemExit("--splits: 'test' clips are the benchmark's; never train on them")
        setup_logging("warning")
        teacher = OnnxRecogniser(args.teacher)
        data, summary = build_real(args.clips, args.media, splits, teacher,
                                   lfw_train_centres(args.prepared, teacher),
                                   args.out, args.fps, args.segment_s)
        write(data, summary, args.out)
        print(json.dumps(summary, indent=1))
        return 0
    if args.cmd == "evaluate-video":
        from trainer.video_eval import evaluate_video

        evaluate_video(args.clips, args.media, args.model or ["cr-fiqa-s"], args.teacher,
                       args.comparator or ["teacher", "dlib"], args.out, args.fps,
                       args.segment_s, args.gallery, args.gallery_min_sim,
                       ("dev", "test") if args.half == "both" else (args.half,),
                       args.size_weight, args.consensus_weight)
        return 0

    if args.cmd == "evaluate-emissions":
        from trainer.emissions import evaluate_emissions

        evaluate_emissions(args.clips, args.media, args.model, args.teacher,
                           args.comparator or ["teacher", "dlib"], args.out, args.fps,
                           args.consensus_weight, args.gap_s,
                           ("dev", "test") if args.half == "both" else (args.half,))
        return 0

    if args.cmd == "signature-data":
        from trainer.signature import build_pack

        pack = build_pack(args.prepared, None if str(args.real) == "none" else args.real)
        pack.save(args.out)
        print(f"{len(pack)} crops ({int(pack.real.sum())} from video) in {args.out}, "
              f"{args.out.stat().st_size / 2**20:.1f} MiB")
        return 0
    if args.cmd == "signature":
        from trainer.signature import Pack, train_signature

        summary = train_signature(Pack.load(args.pack), args.teacher, args.out, args.minutes,
                                  tuple(args.students.split(",")), args.batch, args.lr,
                                  args.real_share, args.workers, args.device,
                                  max_steps=args.max_steps)
        print(json.dumps(summary, indent=1))
        return 0
    if args.cmd == "prepare":
        from trainer.data import prepare

        n, missing = prepare(args.images, args.out, args.val_fraction, args.max_per_identity)
        print(f"{n} aligned crops in {args.out}; {missing} photos without a usable face "
              f"(listed in {args.out / 'undetected.txt'})")
    elif args.cmd == "distill-data":
        from trainer.data import load_prepared
        from trainer.degrade import kinds_without
        from trainer.distill import build, write_summary
        from trainer.recognisers import OnnxRecogniser

        crops, samples = load_prepared(args.prepared)
        teacher = OnnxRecogniser(args.teacher)
        args.out.mkdir(parents=True, exist_ok=True)
        sets = {}
        for split in ("train", "val"):
            sets[split] = build(crops, samples, split, teacher, args.k, args.seed,
                                kinds=kinds_without(args.exclude),
                                hold_out_test=args.hold_out_test)
            sets[split].save(args.out / split)
        write_summary(args.out / "summary.json", sets, teacher.name, args.k,
                      excluded=args.exclude, hold_out_test=args.hold_out_test)
        print((args.out / "summary.json").read_text())
    elif args.cmd == "train":
        from trainer.train import TrainConfig, train_distill, train_joint

        lr = args.lr if args.lr is not None else (2e-3 if args.mode == "distill" else 0.1)
        cfg = TrainConfig(mode=args.mode, backbone=args.backbone, emb_dim=args.emb_dim,
                          epochs=args.epochs, batch=args.batch, lr=lr, alpha=args.alpha,
                          align_jitter_px=args.align_jitter, threads=args.threads,
                          max_steps=args.max_steps,
                          real=None if args.real is None else str(args.real),
                          real_share=args.real_share, landmark_sigma_px=args.landmarks,
                          size_input=args.size_input, aux_weight=args.aux_weight, seed=args.seed)
        fn = train_distill if args.mode == "distill" else train_joint
        result = fn(args.data, args.out, cfg, resume=args.resume)
        print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    elif args.cmd == "export":
        from trainer.export import export

        print(json.dumps(export(args.checkpoint, args.data, args.teacher, args.out,
                                args.name, args.version), indent=1))
    elif args.cmd == "export-v2":
        from trainer.export import export_v2

        print(json.dumps(export_v2(args.quality, args.student, args.prepared, args.out,
                                   args.name, args.version), indent=1))
    elif args.cmd == "quantize-detector":
        from trainer.quantize import build

        videos = sorted(p for p in args.media.iterdir() if p.suffix in (".mp4", ".mkv"))
        print(json.dumps(build(videos, args.out, args.min_recall), indent=1))
    elif args.cmd == "evaluate":
        from trainer.evaluate import evaluate, protocol

        evaluate(args.prepared, args.model or ["cr-fiqa-s"], args.teacher,
                 args.comparator or ["teacher", "dlib"], args.max_per_identity, args.k,
                 args.out, protocol(args.protocol, args.only, args.half))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
