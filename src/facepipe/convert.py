"""convert: render the swap.

For every frame of the swap's clip, each aligned face of the source person is encoded
and decoded with the other person's decoder (in batches), then masked, colour matched,
sharpened, warped back and blended (`compositing`); other frames and faces pass through
untouched. The
output (a video at the source rate with the source audio of the same range, a GIF, or
photos under their own names) is tagged as synthetic media."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from . import identity, media, tagging
from .align import cut_face
from .compositing import composite
from .errors import FacepipeError
from .formats import dataset, model_folder, swap_report
from .formats.alignments import read as read_alignments
from .formats.frames_index import read as read_frames_index
from .fsutil import atomic_dir
from .input_pipeline import center_faces
from .settings import ConvertSettings
from .swapper import Swapper

CHUNK_FRAMES = 16


def check_model_fits(info: dict, alignments: dict, model_dir: Path, faces_dir: Path) -> None:
    """The model can only draw faces aligned the way its training faces were."""
    trained = info.get("padding_fraction")
    here = alignments["padding"] / alignments["crop_size"]
    if trained is None or abs(trained - here) > 1e-6:
        raise FacepipeError(f"convert: {model_dir} learned faces with a margin of {trained} of the crop around the "
                            f"mean face, but {faces_dir}/alignments.json has {here:g}; retrain the pair on faces from "
                            "this facepipe, or redo detect with the version the model was trained with")


def source_faces(faces_dir: Path, alignments: dict, source_dataset: Path, person: str, settings: ConvertSettings,
                 workers: int) -> list[dict]:
    """The faces of the clip that are the source person (all of them when
    `convert.max_distance` is null): each track is checked against the person's mean
    embedding from their dataset, at faces sampled every `convert.identity_interval` s."""
    if settings.max_distance is None:
        return alignments["faces"]
    mean = dataset.person_embedding(source_dataset)
    face_list = alignments["faces"]
    samples, embeddings = identity.embed_samples(faces_dir, face_list, media.frame_rate(alignments["fps"]),
                                                 settings.identity_interval, workers)
    distances = identity.distances_to(face_list, samples, embeddings, mean)
    chosen = [face for face, d in zip(face_list, distances) if d is not None and d <= settings.max_distance]
    if not chosen:
        nearest = min(d for d in distances if d is not None)
        raise FacepipeError(f"convert: none of the {len(face_list)} faces in {alignments['source']} within the swap's "
                            f"range looks like {person} (nearest identity distance {nearest:.2f} > "
                            f"convert.max_distance {settings.max_distance}); check the swap's 'from', or raise "
                            "convert.max_distance (null swaps every face)")
    return chosen


def selected_frames(ranges: list | None, count: int) -> set[int] | None:
    """The clip frames `convert.frame_ranges` asks to swap (None: all of them)."""
    if ranges is None:
        return None
    chosen = set()
    for first, last in ranges:
        if first > last or first >= count:
            raise FacepipeError(f"params.yaml: convert.frame_ranges: [{first}, {last}] is not within the clip's "
                                f"frames 0-{count - 1}; give [first, last] pairs of frame numbers of the clip")
        chosen.update(range(first, min(last, count - 1) + 1))
    return chosen


def swapped_runs(chosen: list[dict]) -> dict[str, list[list[int]]]:
    """Exactly which faces were swapped, compactly: per track, its runs of consecutive
    frames as [first, last] (a track has one face a frame)."""
    runs: dict[str, list[list[int]]] = {}
    for face in sorted(chosen, key=lambda f: (f["track"], f["frame"])):
        track = runs.setdefault(str(face["track"]), [])
        if track and track[-1][1] == face["frame"] - 1:
            track[-1][1] = face["frame"]
        else:
            track.append([face["frame"], face["frame"]])
    return runs


def range_keyframes(ranges: list | None, count: int) -> list[int]:
    """Keyframes where each swapped range starts and ends: then no frame outside a range
    is predicted from a swapped one, and each decodes exactly as the untouched clip
    encoded with the same keyframes would."""
    if ranges is None:
        return []
    return sorted({i for first, last in ranges for i in (first, last + 1) if 0 < i < count})


class Layout:
    """The output picture: the swapped frame, or original | swapped side by side with
    captions; scaled by `convert.output_scale`, a video's to even sizes (as yuv420p
    needs), a photo's to the nearest pixel (an odd-sized photo keeps its size)."""

    def __init__(self, settings: ConvertSettings, captions: tuple[str, str], even: bool = True):
        self.side_by_side = settings.side_by_side
        self.scale = settings.output_scale
        self.captions = captions
        self.step = 2 if even else 1

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        width *= 2 if self.side_by_side else 1
        step = self.step
        return max(step, round(width * self.scale / step) * step), max(step, round(height * self.scale / step) * step)

    def __call__(self, original: np.ndarray, swapped: np.ndarray) -> np.ndarray:
        frame = np.concatenate([original, swapped], axis=1) if self.side_by_side else swapped
        size = self.output_size(*original.shape[1::-1])
        if size != frame.shape[1::-1]:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if self.scale < 1 else cv2.INTER_CUBIC)
        if self.side_by_side:
            frame = np.ascontiguousarray(frame)
            half, height = size[0] // 2, size[1]
            scale = max(0.45, height / 600)
            for i, text in enumerate(self.captions):
                origin = (i * half + int(12 * scale), int(34 * scale))
                cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(2, round(4 * scale)),
                            cv2.LINE_AA)  # outline, readable on any background
                cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                            max(1, round(1.5 * scale)), cv2.LINE_AA)
        return frame


class PhotoWriter:
    """Photos out: each swapped photo under its original name, in a folder that appears
    whole (written beside it, then renamed). A tagged photo whose format cannot carry the
    tag (BMP, TIFF) is written as PNG under its own stem."""

    def __init__(self, target: Path, names: list[str], tags: dict):
        self.target, self.comment, self.frames = target, tags.get("comment"), 0
        self.names = [name if not self.comment or Path(name).suffix.lower() in tagging.COMMENT_SUFFIXES
                      else f"{Path(name).stem}.png" for name in names]
        sources: dict[str, str] = {}
        for source, name in zip(names, self.names):
            if name in sources:
                raise FacepipeError(f"convert: photos {sources[name]} and {source} would both be written as {name} "
                                    "(BMP and TIFF photos come out as PNG, to carry the synthetic-media tag); "
                                    "rename one of them")
            sources[name] = source

    def write(self, frame: np.ndarray) -> None:
        media.write_image(self.folder / self.names[self.frames], frame, comment=self.comment)
        self.frames += 1

    def __enter__(self):
        self._dir = atomic_dir(self.target)
        self.folder = self._dir.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._dir.__exit__(exc_type, exc, tb)


def read_photos(index: dict) -> Generator[np.ndarray]:
    """The original photos (the frames stage's JPEG copies are for detection only)."""
    for name in index["photos"]:
        yield media.read_image(Path(index["photos_dir"]) / name)


def render(frames: Generator[np.ndarray], count: int, by_frame: dict[int, list[dict]], swapper: Swapper,
           model_view: tuple[int, float], crop_size: int, settings: ConvertSettings, layout: Layout, writer, label: str) -> int:
    """Swap, composite and write every frame, as a pipeline: a thread decodes chunks of
    frames, cuts their faces and hands them to the model (which runs on its own
    threads), while this one composites the previous chunk and feeds the encoder
    (another process). Queues are short, so memory does not grow with the clip."""
    resolution, coverage = model_view
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        try:
            chunk, first = [], 0
            for frame in frames:
                chunk.append(frame)
                if len(chunk) == CHUNK_FRAMES:
                    if not offer(prepare(first, chunk)):
                        return
                    first, chunk = first + len(chunk), []
            if chunk and not offer(prepare(first, chunk)):
                return
            offer(None)
        except Exception as exc:  # handed to the consumer, which raises it
            offer(exc)
        finally:
            frames.close()  # stops the decoding ffmpeg now, also when the consumer has quit

    def prepare(first: int, chunk: list) -> tuple:
        jobs = [(i, face) for i in range(len(chunk)) for face in by_frame.get(first + i, [])]
        crops = pending = None
        if jobs:
            crops = np.stack([cut_face(chunk[i], face, crop_size) for i, face in jobs])
            pending = swapper.submit(center_faces(crops, resolution, coverage))
        return chunk, jobs, crops, pending

    def offer(item) -> bool:
        """Queue `item` unless the consumer has stopped (then it would wait forever)."""
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    # The stages are the parallelism; OpenCV's thread pool on these small images only adds overhead.
    cv2.setNumThreads(1)
    producer = threading.Thread(target=produce, name="convert-decode", daemon=True)
    producer.start()
    swapped = done = 0
    try:
        with tqdm(total=count, desc=f"convert {label}", unit="frame") as progress:
            while (item := chunks.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                chunk, jobs, crops, pending = item
                # Frames are composited in place; side by side needs the originals kept.
                new_frames = [frame.copy() for frame in chunk] if layout.side_by_side else chunk
                if jobs:
                    for (i, face), crop, drawn in zip(jobs, crops, swapper.collect(pending)):
                        composite(new_frames[i], face, drawn, crop_size, coverage, settings, crop)
                for original, frame in zip(chunk, new_frames):
                    writer.write(layout(original, frame))
                swapped += len(jobs)
                done += len(chunk)
                progress.update(len(chunk))
    finally:
        stop.set()
        producer.join()
    if done != count:
        raise FacepipeError(f"convert: the clip gave {done} frames, its frames stage saw {count}")
    return swapped


def run(*, frames_dir: str | Path, faces_dir: str | Path, model_dir: str | Path, source_dataset: str | Path,
        out: str | Path, report_path: str | Path | None = None, settings: ConvertSettings, swap_from: str,
        workers: int = 2) -> dict:
    """Render the swap into `out`: a video (.mp4 or .gif) for a video clip, a folder of
    photos for a photo source. Everything that can be wrong is checked before the
    first frame is decoded."""
    frames_dir, out = Path(frames_dir), Path(out)
    index = read_frames_index(frames_dir)
    alignments = read_alignments(faces_dir)
    model, info = model_folder.load(model_dir, "convert")
    check_model_fits(info, alignments, Path(model_dir), Path(faces_dir))
    people = info["people"]
    if swap_from not in people.values():
        raise FacepipeError(f"convert: model {model_dir} was trained on {people['a']} and {people['b']}, "
                            f"not on {swap_from!r}")
    target_side = "b" if people["a"] == swap_from else "a"
    count = index["count"]
    in_range = selected_frames(settings.frame_ranges, count)
    if in_range is not None:
        alignments = {**alignments, "faces": [f for f in alignments["faces"] if f["frame"] in in_range]}
    if not alignments["faces"]:
        where = "within the swap's range" if in_range is None else "in convert.frame_ranges"
        raise FacepipeError(f"convert: no faces in {alignments['source']} {where} ({count} frames looked at); "
                            "choose another start/duration or frame range")
    photos = index["kind"] == "photos"
    if photos == (out.suffix != ""):
        raise FacepipeError(f"convert: {out}: a {'photo folder' if photos else 'video'} swap needs "
                            f"{'a folder (no suffix)' if photos else 'an .mp4 or .gif file'} as output")
    if not photos and out.suffix.lower() != f".{settings.format}":
        raise FacepipeError(f"convert: {out} is not a .{settings.format} file, which params.yaml's "
                            f"convert.format asks for; name the output .{settings.format} or change convert.format")
    chosen = source_faces(Path(faces_dir), alignments, Path(source_dataset), swap_from, settings, workers)
    by_frame: dict[int, list[dict]] = {}
    for face in chosen:
        by_frame.setdefault(face["frame"], []).append(face)

    swapper = Swapper(model, target_side, settings.batch_size)
    tags = tagging.SYNTHETIC_TAGS if settings.tag_synthetic else {}
    layout = Layout(settings, ("original", f"{swap_from} as {people[target_side]}"), even=not photos)
    model_view = (info["model"]["resolution"], info["coverage"])
    size = None if photos else layout.output_size(index["width"], index["height"])
    if photos:
        writer = PhotoWriter(out, index["photos"], tags)
        frames = read_photos(index)
    else:
        video = media.probe(index["video"])
        fps = Fraction(index["fps"])
        writer = media.VideoWriter(out, *size, fps, audio_from=video,
                                   audio_start=index["start"] or None, audio_duration=count / float(fps),
                                   codec=settings.codec, crf=settings.crf, preset=settings.preset, tags=tags,
                                   keyframes=range_keyframes(settings.frame_ranges, count))
        frames = media.read_frames(video, index["start"] or None, index["duration"])
    with writer:
        swapped = render(frames, count, by_frame, swapper, model_view, alignments["crop_size"], settings, layout,
                         writer, out.stem)
    report = {"frames": count, "fps": index["fps"], "frames_with_faces": len(by_frame),
              "faces_swapped": swapped, "faces_left": len(alignments["faces"]) - len(chosen),
              "swapped_tracks": sorted({face["track"] for face in chosen}), "swapped_runs": swapped_runs(chosen),
              "frame_ranges": settings.frame_ranges, "side_by_side": settings.side_by_side,
              "size": size and list(size),
              # The mask the new faces were blended through, so evaluate can find its edge.
              "mask": {"kind": settings.mask, "erode": settings.mask_erode, "blur": settings.mask_blur},
              "coverage": info["coverage"],
              "source": swap_from, "target": people[target_side], "synthetic_tag": bool(tags)}
    if report_path:
        swap_report.write(report_path, report)
    return report
