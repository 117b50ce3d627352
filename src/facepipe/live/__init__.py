"""live: swap faces in a camera, a network stream or a video played in real time, with
a trained pair's model, to a window, a virtual camera, a stream or file, and a preview
page in the browser.

Threads, each doing one thing: ffmpeg decodes the input (sources); the frame loop here
follows the faces (following), composites each frame with convert's own compositing
code and hands it to the outputs; the model draws faces on its own thread (drawing) as
fast as it can, and the loop uses the newest. Frames the loop could not take in time are
dropped, never queued: latency stays bounded and the console says how many."""

from __future__ import annotations

import collections
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import tagging
from ..align import cut_face, transform_points
from ..compositing import composite
from ..errors import FacepipeError
from ..formats import dataset, model_folder
from ..settings import ConvertSettings
from ..swapper import Swapper
from .drawing import Drawer
from .following import Follower
from .marks import draw_label
from .outputs import Control, Status
from .sources import Source

# Latency and rate are reported over this many recent frames.
WINDOW = 90
# Faces in one model call, each compiled before the first frame (compiling one while
# live would stall the frame loop for a second); more faces go in several calls.
BATCH_SIZES = (1, 2)


@dataclass(frozen=True)
class LiveOptions:
    source: str
    model_dir: Path
    person: str  # whose face is drawn
    convert: ConvertSettings  # mask, colour matching, blending, and which faces to replace
    min_score: float  # RetinaFace confidence (detect.min_score)
    realtime: bool = False
    loop: bool = False
    every_face: bool = False
    source_dataset: Path | None = None
    detect_every: int = 5
    detect_width: int = 480
    smooth_min_cutoff: float = 1.0
    smooth_beta: float = 5.0
    label: bool = True
    swap: bool = True
    window: bool = False
    virtual_camera: str | None = None  # "" = the first free device
    streams: tuple[str, ...] = ()
    serve: int | None = None
    host: str = "127.0.0.1"
    duration: float | None = None  # seconds of source, then stop
    timeout: float = 5.0
    progress: bool = True


class Stats:
    def __init__(self):
        self.delivered = 0
        self.first: int | None = None
        self.last = -1
        self.latencies: list[float] = []
        self.face_ages: list[float] = []
        self.recent: collections.deque = collections.deque(maxlen=WINDOW)  # (output time, latency)

    def add(self, index: int, captured: float, delivered: float, ages: list[float]) -> None:
        if self.first is None:
            self.first = index
        self.last = index
        self.delivered += 1
        self.latencies.append(delivered - captured)
        self.face_ages += ages
        self.recent.append((delivered, delivered - captured))

    @property
    def source_frames(self) -> int:
        return 0 if self.first is None else self.last - self.first + 1

    @property
    def dropped(self) -> int:
        return self.source_frames - self.delivered

    def status(self, swap: bool) -> Status:
        if len(self.recent) < 2:
            return Status(0.0, 0.0, self.dropped, swap)
        span = self.recent[-1][0] - self.recent[0][0]
        fps = (len(self.recent) - 1) / span if span > 0 else 0.0
        return Status(fps, 1000 * float(np.median([lat for _, lat in self.recent])), self.dropped, swap)

    def summary(self, fps: float, faces_drawn: int, seconds: float) -> dict:
        def ms(values: list[float], q: float) -> float | None:
            return round(1000 * float(np.percentile(values, q)), 1) if values else None

        return {"source_frames": self.source_frames, "delivered": self.delivered, "dropped": self.dropped,
                "source_fps": round(fps, 3),
                "delivered_ratio": round(self.delivered / self.source_frames, 4) if self.source_frames else None,
                "latency_ms_p50": ms(self.latencies, 50), "latency_ms_p95": ms(self.latencies, 95),
                "face_age_ms_p50": ms(self.face_ages, 50), "face_age_ms_p95": ms(self.face_ages, 95),
                "faces_drawn_per_s": round(faces_drawn / seconds, 2) if seconds > 0 else None}


def _side(info: dict, person: str, model_dir: Path) -> tuple[str, str]:
    """The decoder that draws `person`, and the person whose faces are replaced."""
    people = info["people"]
    for side, other in (("a", "b"), ("b", "a")):
        if people[side] == person:
            return side, people[other]
    raise FacepipeError(f"{model_dir} was trained on {people['a']} and {people['b']}, not on {person!r}; "
                        "give one of them with --as")


def _identity(options: LiveOptions, replaced: str) -> np.ndarray | None:
    """The mean embedding of the person whose faces are replaced, or None: every face."""
    if options.every_face or options.convert.max_distance is None:
        return None
    folder = options.source_dataset or Path("results/datasets") / replaced
    if not (folder / "faces.json").is_file():
        raise FacepipeError(f"{folder}: no dataset of {replaced}, whose faces are to be replaced (params.yaml "
                            "convert.max_distance); give it with --source-dataset, or --every-face to swap every face")
    return dataset.person_embedding(folder)


def _outputs(options: LiveOptions, source: Source, control: Control, stack: contextlib.ExitStack) -> list:
    """The outputs that need the source's size, rate and sound (the preview page is made
    earlier: a port in use is known before the slow parts)."""
    from .outputs.stream import Stream

    outputs = []
    for target in options.streams:
        stream = Stream(target, source.width, source.height, source.fps, audio=source.has_audio,
                        tags=tagging.SYNTHETIC_TAGS if options.label else {}, audio_offset=source.audio_offset)
        stack.callback(stream.close)
        if source.has_audio:
            source.listen(stream.hear)
        outputs.append(stream)
    if options.virtual_camera is not None:
        from .outputs.virtual_camera import VirtualCamera

        camera = VirtualCamera(source.width, source.height, float(source.fps), options.virtual_camera or None)
        stack.callback(camera.close)
        outputs.append(camera)
    if options.window:
        from .outputs.window import Window

        window = Window(control)
        stack.callback(window.close)
        outputs.append(window)
    return outputs


def run(options: LiveOptions) -> dict:
    """Swap until the source ends, `duration` has passed, or the user quits; returns
    the figures of the run (frames, drops, latency)."""
    info = model_folder.read_info(options.model_dir)  # a folder that is not a model: one line, now
    side, replaced = _side(info, options.person, options.model_dir)
    person_embedding = _identity(options, replaced)
    control = Control(options.swap)
    with contextlib.ExitStack() as stack:
        previews = []
        if options.serve is not None:  # a port in use is known before the slow parts
            from .outputs.preview import Preview

            previews.append(stack.enter_context(contextlib.closing(Preview(options.serve, options.host, control))))
            print(f"live: preview at {previews[0].url}", flush=True)
        # The source opens before the slow parts, so a bad address is known at once; a
        # file's clock starts with the first frame taken, a live source's frames before
        # it are dropped.
        source = Source(options.source, realtime=options.realtime, loop=options.loop, timeout=options.timeout)
        stack.callback(source.close)
        outputs = previews + _outputs(options, source, control, stack)
        model, info = model_folder.load(options.model_dir, "live")
        resolution, coverage, crop_size = info["model"]["resolution"], info["coverage"], info["crop_size"]
        swappers = {size: Swapper(model, side, size) for size in BATCH_SIZES}
        for size, swapper in swappers.items():
            swapper(np.zeros((size, resolution, resolution, 3), np.float32))
        follower = Follower(min_score=options.min_score, crop_size=crop_size, detect_every=options.detect_every,
                            detect_width=options.detect_width, min_cutoff=options.smooth_min_cutoff,
                            beta=options.smooth_beta)
        drawer = Drawer(swappers, resolution=resolution, coverage=coverage, person_embedding=person_embedding,
                        max_distance=options.convert.max_distance, identity_interval=options.convert.identity_interval)
        stack.callback(drawer.stop)
        stats = Stats()
        fps = float(source.fps)
        last_frame = None if options.duration is None else round(options.duration * fps)
        progress = tqdm(desc=f"live {options.person}", unit="frame", disable=not options.progress)
        stack.callback(progress.close)
        started = time.monotonic()
        print(f"live: {source.location} {source.width}x{source.height} at {fps:.2f} fps; drawing {options.person} "
              f"over {'every face' if person_embedding is None else replaced}; "
              f"{'keys: space swap on/off, q quit' if options.window else 'Ctrl-C stops'}", flush=True)
        while not control.quit and (frame := source.next()) is not None:
            if last_frame is not None and frame.index >= last_frame:
                break
            if drawer.error is not None:
                raise drawer.error
            picture, ages = frame.rgb, []
            found = follower(picture, frame.index, frame.index / fps)
            if control.swap:
                faces = [(face, record, cut_face(picture, record, crop_size))
                         for face in found for record in [face.as_record()]]
                drawer.offer([(face.track, crop, transform_points(face.landmarks, face.matrix))
                              for face, _, crop in faces], frame.captured)
                for face, record, crop in faces:
                    drawn = drawer.latest(face.track)
                    if drawn is not None:
                        composite(picture, record, drawn[0], crop_size, coverage, options.convert, crop)
                        ages.append(frame.captured - drawn[1])
                drawer.forget({face.track for face in found})
            else:
                drawer.forget(set())
            if options.label:
                draw_label(picture)
            stats.add(frame.index, frame.captured, time.monotonic(), ages)
            status = stats.status(control.swap)
            for output in outputs:
                output.send(frame.index, picture, status)
            progress.update()
            if stats.delivered % 15 == 0:
                progress.set_postfix_str(f"latency {status.latency_ms:.0f} ms, dropped {status.dropped}", refresh=False)
        if frame is None and (error := source.error()) is not None and stats.delivered == 0:
            raise FacepipeError(f"{options.source}: ffmpeg could not read it ({error})")
        seconds = time.monotonic() - started
    summary = stats.summary(fps, drawer.faces_drawn, seconds)
    print(f"live: delivered {summary['delivered']} of {summary['source_frames']} frames, dropped "
          f"{summary['dropped']}, latency p50 {summary['latency_ms_p50']} ms, p95 {summary['latency_ms_p95']} ms, "
          f"{summary['faces_drawn_per_s']} faces drawn a second", flush=True)
    return summary
