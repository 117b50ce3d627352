"""detect: find, follow and align every face of a clip.

A pipeline keeps both cores busy: `threads` worker processes each take chunks of
frames, read them, run RetinaFace (a single-threaded onnxruntime session each) and
dlib's 68 landmarks, and later warp and encode the aligned crops; the main process links
faces into tracks across frames, smooths the landmarks along each track (video only;
`detect.smooth`) and fits the umeyama alignment to the mean face. Processes, not
threads: dlib holds Python's lock while it works, which left a sixth of the two cores
idle. Only a few chunks of frames are held at a time, so memory does not grow with the
length of the video. Writes `alignments.json` (format in README.md) and one aligned crop
per face in `crops.zip`."""

from __future__ import annotations

import collections
import json
import math
import multiprocessing
from multiprocessing.connection import wait
from pathlib import Path

import cv2
from tqdm import tqdm

from . import align, faces, media, tracking
from .errors import FacepipeError
from .formats import alignments, frames_index
from .fsutil import atomic_dir
from .settings import DetectSettings

# Frames per worker task: a worker runs each model over a whole chunk in turn, so the
# detector and dlib's landmark trees stay in cache instead of evicting each other every
# frame (measured: a quarter less CPU per frame than frame by frame).
CHUNK = 8
# Chunks queued per worker, so that none waits for the main process.
DEPTH = 2
# Report stretches without any face at least this long (seconds).
REPORT_GAP = 1.0


def _serve(conn, min_score: float, crop_size: int) -> None:
    """A worker process: analyse chunks of frames; later, encode their crops."""
    cv2.setNumThreads(1)  # the workers are the parallelism; OpenCV's own would oversubscribe
    try:
        detector = faces.Detector(min_score)
        held: dict[int, list] = {}  # chunk -> its frames (BGR), until its crops are encoded
        while True:
            request = conn.recv()
            if request[0] == "analyze":
                _, chunk, paths = request
                images = [cv2.imread(path, cv2.IMREAD_COLOR) for path in paths]
                boxes = [detector(bgr) if bgr is not None else [] for bgr in images]
                result = [None if bgr is None else
                          ([faces.Face(box, score, faces.landmarks(bgr, box)) for box, score in found],
                           tracking.frame_signature(bgr))
                          for bgr, found in zip(images, boxes)]
                held[chunk] = images
                conn.send(("analyzed", chunk, result))
            elif request[0] == "crops":
                _, chunk, jobs = request
                images = held.pop(chunk)
                encoded = []
                for offset, matrix in jobs:
                    crop = cv2.warpAffine(images[offset], matrix, (crop_size, crop_size), flags=cv2.INTER_AREA,
                                          borderMode=cv2.BORDER_REPLICATE)
                    encoded.append(alignments.encode_crop(crop))
                conn.send(("crops", chunk, encoded))
            else:
                return
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the main process is gone (killed): no one to report to
    except Exception as exc:  # the main process reports it as one line
        conn.send(("error", None, f"{type(exc).__name__}: {exc}"))


class _Workers:
    """Worker processes; worker k owns chunks k, k + n, k + 2n, ... and keeps their frames."""

    def __init__(self, count: int, min_score: float, crop_size: int):
        # A fork server: workers start from a clean process (no threads, e.g. JAX's, to
        # inherit) with the face models' modules already imported.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["facepipe._detect_worker"])
        self.conns, self.processes = [], []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child, min_score, crop_size), daemon=True)
            process.start()
            child.close()
            self.conns.append(parent)
            self.processes.append(process)

    def send(self, chunk: int, request: tuple) -> None:
        self.conns[chunk % len(self.conns)].send(request)

    def receive(self) -> tuple[str, int, object]:
        conn = wait(self.conns)[0]
        try:
            kind, chunk, payload = conn.recv()
        except EOFError:
            raise FacepipeError("detect: a worker process died (out of memory?); rerun with fewer threads") from None
        if kind == "error":
            raise FacepipeError(f"detect: a worker failed: {payload}")
        return kind, chunk, payload

    def close(self) -> None:
        for conn, process in zip(self.conns, self.processes):
            if process.is_alive():
                try:
                    conn.send(("stop",))
                except OSError:
                    pass
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
            conn.close()


def _faceless_stretches(frames_with_faces: set[int], count: int, min_length: int) -> list[tuple[int, int]]:
    stretches, start = [], None
    for i in range(count + 1):
        empty = i < count and i not in frames_with_faces
        if empty and start is None:
            start = i
        elif not empty and start is not None:
            if i - start >= min_length:
                stretches.append((start, i - 1))
            start = None
    return stretches


class _Extraction:
    """The main process's side of the pipeline: tracks, smoothing, alignment, records."""

    def __init__(self, index: dict, settings: DetectSettings, out: Path):
        self.last_frame = len(index["files"]) - 1
        self.crop_size = settings.crop_size
        is_video = index["kind"] == "video"
        self.fps = media.frame_rate(index["fps"]) if is_video else None
        sigma_frames = settings.smooth_sigma * self.fps if is_video and settings.smooth else 0.0
        # Under one frame of sigma (low sampling rates) the fit would pass through each point.
        self.smoother = tracking.LandmarkSmoother(sigma_frames) if sigma_frames >= 1 else None
        self.reach = self.smoother.reach if self.smoother else 0
        self.tracker = tracking.Tracker(max_gap=math.ceil(settings.track_gap * self.fps)) if is_video else None
        self.signature = None
        self.waiting = collections.deque()  # analysed frames waiting for `reach` frames of look-ahead
        self.jobs: dict[int, tuple[list[dict], list]] = {}  # chunk -> its records and crop jobs
        self.completed: list[int] = []  # chunks whose frames are all aligned, for their crops
        self.faces_file = (out / "faces.part").open("w")
        self.crops = alignments.CropsWriter(out)
        self.records = self.face_count = 0
        self.cuts, self.unreadable, self.tracks = [], [], {}
        self.frames_with_faces: set[int] = set()

    def add(self, frame: int, name: str, analysed: tuple | None) -> None:
        found, signature = analysed or ([], None)
        if analysed is None:
            self.unreadable.append(name)
            tqdm.write(f"detect: warning: frame {frame} ({name}) is not a readable image; skipped, no faces recorded")
        elif self.tracker is not None:
            if tracking.is_cut(self.signature, signature):
                self.tracker.cut()
                self.cuts.append(frame)
            self.signature = signature
        if self.tracker is not None:
            ids = self.tracker.assign(frame, [f.box for f in found])
        else:  # photos: every face stands alone
            ids = list(range(self.face_count, self.face_count + len(found)))
        self.face_count += len(found)
        if found:
            self.frames_with_faces.add(frame)
        if self.smoother:
            for face, track in zip(found, ids):
                self.smoother.add(track, frame, face.landmarks)
        self.waiting.append((frame, found, ids))
        while self.waiting and self.waiting[0][0] <= frame - self.reach:
            self._finalize(*self.waiting.popleft())
        if self.smoother:
            self.smoother.forget(before=frame - self.reach + 1)

    def finish(self) -> None:
        while self.waiting:
            self._finalize(*self.waiting.popleft())

    def _finalize(self, frame: int, found: list[faces.Face], ids: list[int]) -> None:
        chunk, offset = divmod(frame, CHUNK)
        records, jobs = self.jobs.setdefault(chunk, ([], []))
        for j, (face, track) in enumerate(zip(found, ids)):
            points = self.smoother.smoothed(track, frame) if self.smoother else face.landmarks
            matrix = align.crop_matrix(points, self.crop_size)
            records.append({"frame": frame, "face": j, "track": track, "box": face.box.round(1).tolist(),
                            "score": round(face.score, 4), "landmarks": points.round(2).tolist(),
                            "matrix": matrix.round(6).tolist(), "crop": alignments.crop_name(frame, j)})
            jobs.append((offset, matrix))
            info = self.tracks.setdefault(track, {"track": track, "first": frame, "faces": 0})
            info["last"], info["faces"] = frame, info["faces"] + 1
        if offset == CHUNK - 1 or frame == self.last_frame:
            self.completed.append(chunk)

    def write(self, chunk: int, encoded: list[bytes]) -> None:
        """Store a chunk's crops and records, in order."""
        records, _ = self.jobs.pop(chunk)
        for record, data in zip(records, encoded):
            self.crops.add(record["crop"], data)
            self.faces_file.write(("," if self.records else "") + json.dumps(record) + "\n")
            self.records += 1

    def close(self) -> None:
        self.faces_file.close()
        self.crops.close()


def run(*, frames_dir: str | Path, out_dir: str | Path, settings: DetectSettings, threads: int = 2) -> dict:
    frames_dir = Path(frames_dir)
    index = frames_index.read(frames_dir)
    files = index["files"]
    chunks = [range(start, min(start + CHUNK, len(files))) for start in range(0, len(files), CHUNK)]
    workers = _Workers(max(1, threads), settings.min_score, settings.crop_size)
    try:
        with atomic_dir(out_dir) as tmp:
            extraction = _Extraction(index, settings, tmp)
            analysed, encoded = {}, {}
            sent = next_analysed = next_written = 0
            progress = tqdm(total=len(files), desc=f"detect {frames_dir.name}", unit="frame")
            while next_written < len(chunks):
                while sent < len(chunks) and sent < next_analysed + DEPTH * len(workers.conns):
                    workers.send(sent, ("analyze", sent, [str(frames_dir / files[i]) for i in chunks[sent]]))
                    sent += 1
                kind, chunk, payload = workers.receive()
                (analysed if kind == "analyzed" else encoded)[chunk] = payload
                while next_analysed in analysed:
                    for frame, result in zip(chunks[next_analysed], analysed.pop(next_analysed)):
                        extraction.add(frame, files[frame], result)
                    progress.update(len(chunks[next_analysed]))
                    progress.set_postfix(faces=extraction.face_count, refresh=False)
                    next_analysed += 1
                    if next_analysed == len(chunks):
                        extraction.finish()
                for done in extraction.completed:
                    workers.send(done, ("crops", done, extraction.jobs[done][1]))
                extraction.completed.clear()
                while next_written in encoded:
                    extraction.write(next_written, encoded.pop(next_written))
                    next_written += 1
            progress.close()
            extraction.close()
            header = _alignments(index, frames_dir, extraction)
            with (tmp / "faces.part").open() as part:
                alignments.write(tmp, header, part)
            (tmp / "faces.part").unlink()
    finally:
        workers.close()
    _report(frames_dir, header, extraction.frames_with_faces, extraction.fps)
    return header


def _alignments(index: dict, frames_dir: Path, extraction: _Extraction) -> dict:
    """Everything of alignments.json but the faces."""
    return {
        "source": index["source"],
        "frames": str(frames_dir),
        "kind": index["kind"],
        "frame_count": len(index["files"]),
        "fps": index["fps"],
        "width": index.get("width"),
        "height": index.get("height"),
        "crop_size": extraction.crop_size,
        "padding": align.PADDING_FRACTION * extraction.crop_size,
        "smoothing_sigma_frames": round(extraction.smoother.sigma, 3) if extraction.smoother else None,
        "frames_with_faces": len(extraction.frames_with_faces),
        "face_count": extraction.face_count,
        "unreadable_frames": extraction.unreadable,
        "cuts": extraction.cuts,
        "tracks": [extraction.tracks[t] for t in sorted(extraction.tracks)],
    }


def _report(frames_dir: Path, header: dict, frames_with_faces: set[int], fps: float | None) -> None:
    count = header["frame_count"]
    print(f"detect: {header['face_count']} faces in {len(frames_with_faces)} of {count} frames, "
          f"{len(header['tracks'])} tracks, {len(header['cuts'])} shot cuts")
    if not frames_with_faces:
        print(f"detect: warning: no faces in any of the {count} frames of {frames_dir}")
    elif fps:
        for first, last in _faceless_stretches(frames_with_faces, count, max(1, round(REPORT_GAP * fps))):
            print(f"detect: no face in frames {first}-{last} ({first / fps:.1f}-{(last + 1) / fps:.1f} s)")
