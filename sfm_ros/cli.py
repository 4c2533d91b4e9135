"""`sfm-ros`: one command with subcommands (train, eval, synth, ...). Run `sfm-ros -h`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from sfm_ros.core.errors import SfmError

log = logging.getLogger("sfm_ros")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded_int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded_int(text, 0, "an integer >= 0")


def image_size(text: str) -> tuple[int, int]:
    """argparse type: HxW, both at least 8 (e.g. 128x416) -> (height, width)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 128x416, got {text!r}") from None
    if min(height, width) < 8:
        raise argparse.ArgumentTypeError(f"both sides must be at least 8, got {text!r}")
    return height, width


def _bounded_int(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def _write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=float) + "\n")
        print(f"wrote {path}")


# ---------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from sfm_ros.core.config import load_config
    from sfm_ros.core.train import Trainer
    from sfm_ros.messages.bag_dataset import BagSequence

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"log.out_dir={args.out}")
    cfg = load_config(args.config, overrides, preset=args.preset)
    trainer = Trainer(cfg, resume=args.resume, bag_reader=BagSequence)
    summary = trainer.run()
    if trainer.is_main:
        _report_training(summary)
    if trainer.distributed:
        _exit_rank()
    return 0


def _report_training(summary) -> None:
    print(
        f"done: {summary.steps_done} steps, {summary.seconds_per_step:.3f} s/step, "
        f"last loss {summary.last_loss:.4f}, skipped non-finite steps: "
        f"{summary.skipped_nonfinite}"
    )
    if summary.val:
        print("validation: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.val.items()))
    for warning in summary.warnings:
        print("WARNING: " + warning)
    print(f"checkpoint: {summary.checkpoint}")


def _exit_rank() -> NoReturn:
    """End a torchrun rank without interpreter finalization. Gloo's worker threads may still
    be releasing their last collective's tensors, which takes the GIL; during finalization that
    kills the thread and aborts the process ("terminate called without an active exception",
    exit -6) after a complete run. Everything is written and the process group destroyed here.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ---------------------------------------------------------------------------- eval
def _predictor(args: argparse.Namespace):
    """The node's pipeline with its parameters (params file, --set, --checkpoint, --device)."""
    from sfm_ros.pipeline.evaluate import PipelinePredictor
    from sfm_ros.pipeline.params_file import pipeline_config

    overrides = [*args.set, *([f"device={args.device}"] if args.device else [])]
    return PipelinePredictor(pipeline_config(args.params, overrides, args.checkpoint))


def _render_size(args: argparse.Namespace, estimator) -> dict[str, int]:
    """Rendering size of synthetic sources: --render-size, else the network's input size."""
    height, width = args.render_size or (estimator.height, estimator.width)
    return {"height": height, "width": width}


def _describe(predictor) -> dict:
    cfg = predictor.cfg
    keys = ("checkpoint", "pose_source", "depth_source", "scale_source", "resize_policy")
    return {key: getattr(cfg, key) for key in keys}


def cmd_eval_depth(args: argparse.Namespace) -> int:
    from sfm_ros.core.evaluate import DepthEvalOptions, evaluate_depth_sequences
    from sfm_ros.messages.sources import open_sources

    predictor = _predictor(args)
    options = DepthEvalOptions(
        args.min_depth, args.max_depth, args.garg_crop, args.metric, args.max_frames
    )
    sequences = open_sources(args.data, **_render_size(args, predictor.estimator))
    report = evaluate_depth_sequences(predictor, sequences, options)
    print(report["table"])
    for warning in report["warnings"]:
        print("WARNING: " + warning)
    _write_json(args.json, {**report, "pipeline": _describe(predictor), "data": args.data})
    return 0


def cmd_eval_pose(args: argparse.Namespace) -> int:
    from sfm_ros.core.evaluate import evaluate_pose_sequences
    from sfm_ros.messages.sources import open_sources

    predictor = _predictor(args)
    sequences = open_sources(args.data, **_render_size(args, predictor.estimator))
    report = evaluate_pose_sequences(predictor, sequences)
    print(report["table"])
    if args.plot:
        from sfm_ros.core.visualize import plot_trajectories

        for name, entry in report["sequences"].items():
            path = Path(args.plot) / f"trajectory_{name}.png"
            plot_trajectories(path, entry["trajectory_xyz"], title=f"{name} (Sim(3)-aligned)")
            print(f"wrote {path}")
    _write_json(args.json, {**report, "pipeline": _describe(predictor), "data": args.data})
    return 0


# ---------------------------------------------------------------------------- synth
def cmd_synth(args: argparse.Namespace) -> int:
    from sfm_ros.core.synthetic import render_sequence, write_sequence

    start = time.perf_counter()
    seq = render_sequence(
        args.domain,
        args.frames,
        seed=args.seed,
        height=args.height,
        width=args.width,
        start=args.start,
    )
    write_sequence(seq, Path(args.out))
    print(
        f"wrote {args.frames} {args.domain} frames ({args.width}x{args.height}) to {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


# ---------------------------------------------------------------------------- finetune
def cmd_finetune(args: argparse.Namespace) -> int:
    from sfm_ros.core.checkpoint import DEFAULT_MODEL
    from sfm_ros.core.config import parse_overrides
    from sfm_ros.core.online import OnlineAdapter, OnlineConfig, adapt_sequences
    from sfm_ros.messages.bag_dataset import BagSequence
    from sfm_ros.messages.sources import open_source

    checkpoint = args.checkpoint or (str(DEFAULT_MODEL) if DEFAULT_MODEL.is_file() else "")
    values = {**parse_overrides(args.set), "out_dir": args.out, "checkpoint": checkpoint}
    values.update(device=args.device, resume=not args.no_resume)
    if args.threads is not None:
        values["threads"] = args.threads
    if args.lr is not None:
        values["lr"] = args.lr
    cfg = OnlineConfig().replace(**values)
    print(f"starting from {checkpoint or 'scratch (no --checkpoint and no packaged model)'}")
    adapter = OnlineAdapter(cfg, bag_reader=BagSequence)
    sequences = open_source(
        args.bag, height=adapter.height, width=adapter.width,
        image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
    )  # fmt: skip
    summary = adapt_sequences(
        adapter, sequences, steps_per_frame=args.steps_per_frame, realtime=args.realtime,
        max_frames=args.max_frames, progress=not args.no_progress, max_steps=args.max_steps,
        max_minutes=args.max_minutes,
    )  # fmt: skip
    print(summary.format())
    return 0


# ---------------------------------------------------------------------------- pack-model
def cmd_pack_model(args: argparse.Namespace) -> int:
    from sfm_ros.core.checkpoint import DEFAULT_MODEL, pack_checkpoint

    out = Path(args.out) if args.out else DEFAULT_MODEL
    pack_checkpoint(args.checkpoint, out, fp16=not args.fp32)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from sfm_ros.demo import run_demo

    run_demo(Path(args.out), args.warmup_steps_per_frame, args.checkpoint)
    return 0


# ---------------------------------------------------------------------------- bag tools
def cmd_bag(args: argparse.Namespace) -> int:
    from sfm_ros.pipeline.bag_tool import process_bag
    from sfm_ros.pipeline.params_file import pipeline_config

    cfg = pipeline_config(args.params, args.set, args.checkpoint)
    summary = process_bag(
        args.input, args.output, args.image_topic, args.camera_info_topic, cfg,
        odometry_topic=args.odometry_topic, imu_topic=args.imu_topic, storage=args.storage,
        namespace=args.namespace, overwrite=args.overwrite, num_previews=args.previews,
        progress=not args.no_progress,
    )  # fmt: skip
    print(summary.format())
    return 0


def cmd_make_bag(args: argparse.Namespace) -> int:
    from sfm_ros.messages.bag_io import make_bag

    out = make_bag(
        args.out, synthetic=args.synthetic, images=args.images, frames=args.frames,
        seed=args.seed, height=args.height, width=args.width, fps=args.fps,
        storage=args.storage, overwrite=args.overwrite, imu_rate_hz=args.imu_rate,
    )  # fmt: skip
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from sfm_ros.core.checkpoint import resolve_checkpoint
    from sfm_ros.core.export import export_onnx

    result = export_onnx(
        resolve_checkpoint(args.checkpoint), args.out, opset=args.opset, fp16=args.fp16
    )
    for name, diff in result.max_abs_diff.items():
        print(f"{name}: max |onnxruntime - pytorch| = {diff:.3g}")
    print(f"wrote {result.out_dir} (depth.onnx, pose.onnx, export.json)")
    return 0


# ---------------------------------------------------------------------------- parser
def _add_node_parameters(p: argparse.ArgumentParser) -> None:
    """--params / --set: the depth node's parameters, as `ros2 run ... --ros-args` takes them."""
    p.add_argument("--params", help="the node's ROS 2 params file (e.g. config/sfm.yaml)")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="node parameter overrides, e.g. --set pose_source=refined scale_source=fixed",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfm-ros",
        description="Self-supervised monocular depth and ego-motion (SfMLearner family).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train depth and pose networks by view synthesis")
    p.add_argument("--config", help="YAML config (sections data, model, loss, optim, log)")
    p.add_argument("--preset", help="recipe: default (ours) or sfmlearner (Zhou et al. 2017)")
    p.add_argument("--out", help="run folder (shortcut for log.out_dir=...)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in the run folder",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="SECTION.OPTION=VALUE",
        help="config overrides, e.g. optim.lr=1e-4 data.train=[synthetic:field]",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval",
        help="evaluate the node's pipeline (depth or pose) with its parameters",
        description="Runs the depth/odometry node's pipeline (the same parameters: --params, "
        "--set) over sequences with ground truth and prints the metrics beside baselines.",
    )
    eval_sub = p.add_subparsers(dest="what", required=True)
    for what, func, doc in (
        ("depth", cmd_eval_depth, "Abs Rel, Sq Rel, RMSE, RMSE log, delta<1.25^k"),
        ("pose", cmd_eval_pose, "5-frame ATE, Sim(3) RMSE ATE, KITTI t_err/r_err"),
    ):
        q = eval_sub.add_parser(what, help=doc)
        q.add_argument(
            "--checkpoint",
            help="checkpoint (.pt) or `sfm-ros export` folder (default: the packaged model)",
        )
        q.add_argument(
            "--data",
            nargs="+",
            required=True,
            help="sources with ground truth: paths or synthetic:DOMAIN:FRAMES:SEED",
        )
        q.add_argument("--json", help="write the results as JSON here")
        q.add_argument("--device", help="auto, cpu, cuda, cuda:N (overrides the params file)")
        q.add_argument(
            "--render-size",
            type=image_size,
            help="HxW of synthetic sources, e.g. 128x416 (default: the network's input size; "
            "a camera's images are larger, and the classical estimate needs them to be)",
        )
        _add_node_parameters(q)
        if what == "depth":
            q.add_argument("--min-depth", type=float, default=1e-3)
            q.add_argument("--max-depth", type=float, default=80.0, help="depth cap (m)")
            q.add_argument("--garg-crop", action="store_true", help="KITTI Garg crop")
            q.add_argument(
                "--metric", action="store_true", help="also report metric-scale (unscaled) results"
            )
            q.add_argument(
                "--max-frames", type=positive_int, help="evaluate at most this many frames"
            )
        else:
            q.add_argument("--plot", help="folder for trajectory plots (PNG)")
        q.set_defaults(func=func)

    p = sub.add_parser("synth", help="render a synthetic sequence to disk")
    p.add_argument("--domain", default="street", help="street, corridor or field")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first frame index of the trajectory")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=416)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("bag", help="run the depth/odometry node's pipeline over a bag offline")
    p.add_argument("input", help="rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag file")
    p.add_argument("output", help="output rosbag2 folder (previews go to OUTPUT_previews/)")
    p.add_argument("--image-topic", required=True, help="sensor_msgs Image or CompressedImage")
    p.add_argument(
        "--camera-info-topic", help="CameraInfo topic (default: <image namespace>/camera_info)"
    )
    p.add_argument("--odometry-topic", help="external nav_msgs/Odometry for scale_source odometry")
    p.add_argument(
        "--imu-topic",
        metavar="TOPIC",
        help="sensor_msgs/Imu whose angular velocity gives the rotation between frames "
        "(use_imu); the camera <- IMU rotation comes from the bag's /tf_static (or /tf)",
    )
    p.add_argument(
        "--checkpoint",
        help="checkpoint (.pt) or `sfm-ros export` folder (onnxruntime); overrides the params file",
    )
    _add_node_parameters(p)
    p.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    p.add_argument("--namespace", default="/sfm", help="prefix of the output topics")
    p.add_argument("--previews", type=int, default=4, help="depth previews to write (0 = none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bag)

    p = sub.add_parser("make-bag", help="write a synthetic or recorded sequence as a rosbag2")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", metavar="DOMAIN", help="street, corridor or field")
    source.add_argument("--images", help="image folder, KITTI sequence/drive or bag")
    p.add_argument(
        "--frames", type=int, default=100,
        help="number of frames: a synthetic sequence's length, or the first frames of --images "
        "(default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="synthetic seed (default: %(default)s)")
    p.add_argument(
        "--height", type=int, default=128, help="synthetic image height (default: %(default)s)"
    )
    p.add_argument(
        "--width", type=int, default=416, help="synthetic image width (default: %(default)s)"
    )
    p.add_argument(
        "--fps",
        type=float,
        default=10.0,
        help="frame rate of the stamps (sources without their own times); default %(default)s",
    )
    p.add_argument(
        "--storage", default="sqlite3", choices=("sqlite3", "mcap"), help="(default: %(default)s)"
    )
    p.add_argument(
        "--imu-rate", type=float, default=0.0, metavar="HZ",
        help="also write /imu, a gyroscope simulated on the true trajectory at HZ (a MEMS "
        "gyro's noise, a 0.5 deg/s bias), and /tf_static with the camera's and the IMU's mounts "
        "(needs poses; default %(default)s: none)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output rosbag2 folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_make_bag)

    p = sub.add_parser(
        "finetune", help="adapt a model to a recording offline (the finetune node's adapter)"
    )
    p.add_argument(
        "--bag", required=True, metavar="SOURCE",
        help="rosbag2 folder, .db3/.mcap/.bag, image folder, KITTI sequence or synthetic:...",
    )  # fmt: skip
    p.add_argument("--checkpoint", help="starting checkpoint (default: packaged model or scratch)")
    p.add_argument("--out", required=True, help="folder of adapted_<version>.pt and latest.pt")
    p.add_argument("--image-topic", help="image topic of a bag (auto-detected when unique)")
    p.add_argument("--camera-info-topic", help="CameraInfo topic of a bag")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--lr", type=float, help="learning rate (default: the node's)")
    p.add_argument(
        "--steps-per-frame", type=non_negative_int, default=1,
        help="training steps after each frame (deterministic mode)",
    )  # fmt: skip
    p.add_argument(
        "--realtime", action="store_true",
        help="pace frames at the recording's rate and train in the background (duty cycle)",
    )  # fmt: skip
    p.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    p.add_argument(
        "--max-steps", type=positive_int,
        help="training steps of this run; a short recording is trained on (its snippets and "
        "replay) after its last frame until they are done",
    )  # fmt: skip
    p.add_argument(
        "--max-minutes", type=float, help="wall-clock budget: stop reading and training then"
    )
    p.add_argument(
        "--threads", type=non_negative_int,
        help="CPU threads for training (0 = torch's default; one is often fastest per step on "
        "a busy machine) (default: the threads parameter, 1)",
    )  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="ignore OUT/latest.pt")
    p.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="other settings of the finetune node, e.g. --set save_period=20 buffer_size=32",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("pack-model", help="weights-only (fp16) copy of a checkpoint to deploy")
    p.add_argument("checkpoint", help="training checkpoint (.pt)")
    p.add_argument("--out", help="output file (default: the packaged default model)")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    p.set_defaults(func=cmd_pack_model)

    p = sub.add_parser("demo", help="the whole system on the bundled synthetic sample")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--checkpoint", help="model to start from (default: the packaged model)")
    p.add_argument(
        "--warmup-steps-per-frame",
        type=int,
        default=1,
        help="online fine-tuning steps per recorded frame",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export the networks to ONNX and check them")
    p.add_argument("--checkpoint", help="sfm_ros checkpoint (default: the packaged model)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--fp16", action="store_true", help="half-precision weights (float32 I/O)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except SfmError as exc:
        print(f"sfm-ros: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sfm-ros: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
