"""`facepipe <stage>`: one subcommand per pipeline stage, each a thin wrapper over its
module. Snakemake calls these; a person can too. Each stage reads its own section of
params.yaml (`--params`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from tqdm import tqdm

from . import settings
from .config import load_params
from .errors import FacepipeError
from .fsutil import no_space_message, out_of_space


def _settings(args, section: str):
    return settings.section(load_params(args.params), section)


def cmd_download(args):
    from . import download

    download.run(location=args.source, kind=args.kind, source_id=args.id, out_dir=args.out,
                 settings=_settings(args, "download"))


def cmd_frames(args):
    from . import frames

    clip = _settings(args, "frames")
    if args.native_fps:  # a swap's clip: every frame, the swap's own range
        clip = dataclasses.replace(clip, fps=None, start=args.start or 0, duration=args.duration)
    else:
        clip = dataclasses.replace(clip, start=clip.start if args.start is None else args.start,
                                   duration=clip.duration if args.duration is None else args.duration)
    frames.run(download_dir=args.download, out_dir=args.out, settings=clip)


def cmd_detect(args):
    from . import detect

    detect.run(frames_dir=args.frames, out_dir=args.out, settings=_settings(args, "detect"), threads=args.threads)


def cmd_filter(args):
    from . import filter as face_filter

    face_filter.run(faces_dirs=args.faces, reference=args.reference, out_dir=args.out, report_path=args.report,
                    sheet_path=args.sheet, settings=_settings(args, "filter"), person=args.person,
                    anyone=args.anyone, workers=args.threads)


def cmd_train(args):
    training = _settings(args, "train")
    if args.pretrain:  # a pretrained model: its own steps, a pool of faces on both sides, from scratch
        training = dataclasses.replace(training, steps=_settings(args, "pretrain").steps)
    people = ("pretrain", "pretrain") if args.pretrain else tuple(args.people)

    def run():
        from . import train

        train.run(datasets_a=args.a, datasets_b=args.b, init_from=args.init_from, out_dir=args.out,
                  checkpoint_dir=args.checkpoints, settings=training, people=people)

    if training.hosts == 1:
        if args.coordinator is not None or args.process_id is not None:
            raise FacepipeError("train: --coordinator and --process-id join the processes of train.hosts > 1; "
                                "params.yaml has train.hosts: 1")
        run()
        return
    from . import hosts

    index = hosts.process_index(training.hosts, args.coordinator, args.process_id)
    if hosts.is_worker():
        hosts.work(training.hosts, args.coordinator, index, run)
    else:
        hosts.supervise(args.argv, training.hosts, index, Path(args.checkpoints))


def cmd_convert(args):
    from . import convert

    convert.run(frames_dir=args.frames, faces_dir=args.faces, model_dir=args.model, source_dataset=args.source_dataset,
                out=args.out, report_path=args.report, settings=_settings(args, "convert"), swap_from=args.swap_from,
                workers=args.threads)


def cmd_evaluate(args):
    from . import evaluate

    swap = None if args.target == "pair" else evaluate.SwapInputs(
        video=Path(args.video), report=Path(args.swap_report), frames_dir=Path(args.frames),
        faces_dir=Path(args.faces), source_dataset=Path(args.source), target_dataset=Path(args.target_dataset),
        people=[Path(p) for p in args.people])
    evaluate.run(model_dir=args.model, pair=(args.a, args.b) if args.target == "pair" else None, swap=swap,
                 out=args.out, table=args.table, strip=args.strip, settings=_settings(args, "evaluate"))


def cmd_live(args):
    # The model thread takes one core and the frame loop the other: XLA's own threads
    # would take the loop's core for nothing (a 64 px original model: 40 ms a face on
    # one thread or two, measured on 2 cores). Read when JAX starts, which is next.
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    from . import live

    params = load_params(args.params)
    figures = live.run(live.LiveOptions(
        source=args.source, model_dir=Path(args.model), person=args.person, convert=settings.section(params, "convert"),
        min_score=params["detect"]["min_score"], realtime=args.realtime, loop=args.loop, every_face=args.every_face,
        source_dataset=Path(args.source_dataset) if args.source_dataset else None, detect_every=args.detect_every,
        detect_width=args.detect_width, smooth_min_cutoff=args.smooth_min_cutoff, smooth_beta=args.smooth_beta,
        label=not args.no_label, swap=not args.no_swap,
        # No output named: a window, as a webcam app would open.
        window=args.window or not (args.stream or args.serve is not None or args.virtual_camera is not None),
        virtual_camera=args.virtual_camera, streams=tuple(args.stream), serve=args.serve, host=args.host,
        duration=args.duration, timeout=args.timeout))
    if args.report:
        from .fsutil import write_json

        write_json(args.report, figures)


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value
    return parse


def _snakemake_args(args) -> list[str]:
    return ["--configfile", args.configfile] if args.configfile else []


def cmd_dvc_yaml(args):
    from . import dvcstages

    dvcstages.write(args.out, args.configfile)


def cmd_fingerprints(args):
    from . import stage_code

    for path in stage_code.write_fingerprints():
        print(f"fingerprints: wrote {path}")


def cmd_restore(args):
    from . import dvcstages

    dvcstages.restore(_snakemake_args(args))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facepipe", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name, func, help):
        s = sub.add_parser(name, help=help)
        s.add_argument("--params", default="params.yaml", help="params.yaml to read this stage's section from")
        s.set_defaults(func=func)
        return s

    s = stage("download", cmd_download, "fetch or copy one source, with its provenance")
    s.add_argument("--source", required=True, help="URL, video file or photo folder")
    s.add_argument("--kind", required=True, choices=["url", "video", "photos"])
    s.add_argument("--id", required=True, help="source id (names the output)")
    s.add_argument("--out", required=True, help="output folder")

    s = stage("frames", cmd_frames, "split a downloaded video into frames")
    s.add_argument("--download", required=True, help="download stage folder")
    s.add_argument("--out", required=True)
    s.add_argument("--native-fps", action="store_true", help="keep every frame (swap clips)")
    s.add_argument("--start", type=float, help="seconds; overrides frames.start")
    s.add_argument("--duration", type=float, help="seconds; overrides frames.duration")

    s = stage("detect", cmd_detect, "detect, track, landmark and align every face of a clip")
    s.add_argument("--frames", required=True, help="frames stage folder")
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=2, help="pipeline workers (default 2)")

    s = stage("filter", cmd_filter, "keep one person's good faces as a dataset")
    s.add_argument("--person", required=True)
    s.add_argument("--faces", required=True, nargs="+", help="detect stage folders of the person's sources")
    s.add_argument("--reference", help="photo of the person")
    s.add_argument("--anyone", action="store_true", help="keep good faces of anyone (a pool for pretraining)")
    s.add_argument("--out", required=True, help="dataset folder")
    s.add_argument("--report", required=True, help="JSON report of kept and dropped faces")
    s.add_argument("--sheet", help="contact sheet image of kept and dropped faces")
    s.add_argument("--threads", type=int, default=2, help="processes computing identity embeddings (default 2)")

    s = stage("train", cmd_train, "train the shared encoder and both decoders")
    s.add_argument("--a", required=True, nargs="+", help="dataset folder of person A (several: a pool)")
    s.add_argument("--b", required=True, nargs="+", help="dataset folder of person B (several: a pool)")
    role = s.add_mutually_exclusive_group()
    role.add_argument("--people", nargs=2, default=["a", "b"], metavar=("A", "B"))
    role.add_argument("--pretrain", action="store_true", help="a pretrained model: pretrain.steps, pools on both sides")
    s.add_argument("--init-from", help="model folder to start from (train.init_parts says which parts)")
    s.add_argument("--out", required=True, help="model folder")
    s.add_argument("--checkpoints", required=True, help="folder for resumable checkpoints")
    s.add_argument("--coordinator", metavar="HOST:PORT",
                   help="train.hosts > 1 without Slurm: where process 0 listens for the others")
    s.add_argument("--process-id", type=int, metavar="I", help="train.hosts > 1 without Slurm: which process this is")

    s = stage("convert", cmd_convert, "render a swap (video, GIF or photos)")
    s.add_argument("--frames", required=True, help="frames stage folder of the swap clip")
    s.add_argument("--faces", required=True, help="detect stage folder of the swap clip")
    s.add_argument("--model", required=True, help="train stage folder")
    s.add_argument("--from", dest="swap_from", required=True, help="the person shown in the video")
    s.add_argument("--source-dataset", required=True, help="filter stage folder of that person (their identity)")
    s.add_argument("--out", required=True, help="output video (.mp4 or .gif), or a folder for a photo swap")
    s.add_argument("--report", help="JSON summary of the swap")
    s.add_argument("--threads", type=int, default=2, help="processes checking identities (default 2)")

    s = stage("evaluate", cmd_evaluate, "measure a trained pair or a rendered swap")
    targets = s.add_subparsers(dest="target", required=True)
    t = targets.add_parser("pair", help="reconstruction MAE/SSIM on held-out faces")
    t.add_argument("--model", required=True, help="train stage folder")
    t.add_argument("--a", required=True, help="dataset folder of person A")
    t.add_argument("--b", required=True, help="dataset folder of person B")
    t.add_argument("--out", required=True, help="metrics JSON")
    t.add_argument("--table", help="the metrics as an HTML table")
    t.add_argument("--strip", help="image: held-out faces above their reconstructions")
    t = targets.add_parser("swap", help="identity, expression, pose, sharpness, seam, flicker and background metrics")
    t.add_argument("--video", required=True, help="the swapped video")
    t.add_argument("--swap-report", required=True,
                   help="convert's JSON summary: the faces it swapped and the mask it used")
    t.add_argument("--frames", required=True, help="frames stage folder of the swap clip")
    t.add_argument("--faces", required=True, help="detect stage folder of the swap clip")
    t.add_argument("--model", required=True, help="train stage folder of the pair (resolution and coverage)")
    t.add_argument("--source", required=True, help="dataset folder of the person in the video")
    t.add_argument("--target", dest="target_dataset", required=True, help="dataset folder of the person swapped in")
    t.add_argument("--people", nargs="+", required=True,
                   help="dataset folders of every person of the build, to tell whom the output looks like")
    t.add_argument("--out", required=True, help="metrics JSON")
    t.add_argument("--table", help="the metrics as an HTML table")
    t.add_argument("--strip", help="image: input frames above their swapped versions")

    s = stage("live", cmd_live, "swap faces in a camera, stream or video in real time (README, Live)")
    s.add_argument("source", help="camera (/dev/video0 or 0), stream URL (rtsp://, udp://, http://, srt://) or video file")
    s.add_argument("--model", required=True, help="a trained pair's model folder (results/models/<pair>)")
    s.add_argument("--as", dest="person", required=True, help="the person of the pair whose face is drawn")
    s.add_argument("--realtime", action="store_true", help="play a video file at its own rate, as a camera would")
    s.add_argument("--loop", action="store_true", help="play a video file over and over")
    s.add_argument("--every-face", action="store_true",
                   help="swap every face (default: only the pair's other person, by params.yaml convert.max_distance)")
    s.add_argument("--source-dataset", help="dataset folder of the person to replace (default results/datasets/<them>)")
    s.add_argument("--window", action="store_true", help="show a window (the default when no other output is named)")
    s.add_argument("--virtual-camera", nargs="?", const="", metavar="DEVICE",
                   help="send to a virtual camera (v4l2loopback /dev/videoN on Linux; README, Live)")
    s.add_argument("--stream", action="append", default=[], metavar="URL_OR_FILE",
                   help="send to udp://, srt://, rtmp://, rtsp:// or a file (.mp4, .mkv, .ts); repeatable")
    s.add_argument("--serve", type=int, metavar="PORT", help="a preview page with a swap switch at http://HOST:PORT/")
    s.add_argument("--host", default="127.0.0.1", help="address the preview page listens on (default 127.0.0.1)")
    s.add_argument("--no-label", action="store_true", help="leave out the 'synthetic' mark (README, Live: why it is on)")
    s.add_argument("--no-swap", action="store_true", help="start with the swap off (the window's key or page's switch)")
    s.add_argument("--detect-every", type=_positive(int), default=5, metavar="N",
                   help="run RetinaFace every N frames; faces are followed by their landmarks in between (default 5)")
    s.add_argument("--detect-width", type=_positive(int), default=480, metavar="PX",
                   help="width of the frame RetinaFace looks at (default 480)")
    s.add_argument("--smooth-min-cutoff", type=_positive(float), default=1.0, metavar="HZ",
                   help="one-euro filter: smoothing of a still face (lower: smoother; default 1.0)")
    s.add_argument("--smooth-beta", type=float, default=5.0,
                   help="one-euro filter: how fast smoothing gives way to motion (higher: less lag; default 5)")
    s.add_argument("--duration", type=_positive(float), metavar="SECONDS", help="stop after this much of the source")
    s.add_argument("--timeout", type=_positive(float), default=5.0, metavar="SECONDS",
                   help="how long a camera or stream may take to show its first picture (default 5)")
    s.add_argument("--report", metavar="JSON", help="write the run's figures (frames, drops, latency) to this file")

    s = sub.add_parser("dvc-yaml", help="write dvc.yaml from the Snakemake DAG")
    s.add_argument("--out", default="dvc.yaml")
    s.add_argument("--configfile", help="build config (default: the Snakefile's config/config.yaml)")
    s.set_defaults(func=cmd_dvc_yaml)

    s = sub.add_parser("fingerprints", help="write each stage's code fingerprint to workflow/fingerprints/")
    s.set_defaults(func=cmd_fingerprints)

    s = sub.add_parser("restore", help="dvc pull, then mark the restored outputs up to date for Snakemake")
    s.add_argument("--configfile", help="build config (default: the Snakefile's config/config.yaml)")
    s.set_defaults(func=cmd_restore)
    return p


def report(command: str, exc: FacepipeError | KeyboardInterrupt) -> int:
    """Say in one line why a command stopped; returns its exit status."""
    for bar in list(tqdm._instances):  # a progress bar left open: its line ends before ours starts
        bar.close()
    if isinstance(exc, KeyboardInterrupt):
        print(f"facepipe {command}: interrupted", file=sys.stderr)
        return 130
    print(f"facepipe {command}: error: {exc}", file=sys.stderr)
    return 1


def use_compile_cache() -> None:
    """Keep the programs JAX compiles in a folder between runs (JAX's persistent cache),
    so the next run of a stage (a resumed training, the next swap) starts without
    compiling again: a tiny 10-step training took 25 s cold and 8 s warm here. The same
    program gives the same bytes from the cache or compiled anew. FACEPIPE_COMPILE_CACHE
    names the folder, or `off`; unset, JAX's own JAX_COMPILATION_CACHE_DIR, else
    ~/.cache/facepipe/jax."""
    # JAX reads these variables when it is imported, which no stage has done yet.
    folder = os.environ.get("FACEPIPE_COMPILE_CACHE")
    if folder == "off":
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        return
    if folder:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    else:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facepipe" / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # every program: many small ones add up
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    # A size bound turns on JAX's least-recently-used eviction and, with it, the file lock
    # that keeps jobs running at once from reading each other's half-written entries.
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    use_compile_cache()
    args = parser().parse_args(argv)
    args.argv = argv  # train.hosts > 1 reruns the same command in a worker process
    try:
        args.func(args)
    except BaseException as exc:
        if out_of_space(exc):
            path = getattr(exc, "filename", None) or getattr(args, "out", None) or "."
            return report(args.command, FacepipeError(no_space_message(path, getattr(exc, "written_bytes", None))))
        if isinstance(exc, (FacepipeError, KeyboardInterrupt)):
            return report(args.command, exc)
        raise
    return 0
