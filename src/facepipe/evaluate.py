"""evaluate: measure a build, so every later change can be judged by numbers.

Per pair: reconstruction MAE and SSIM of A->A and B->B on the held-out faces (never
trained on), beside the same for the untrained model. Per swap: identity transfer (the
share of scored output faces nearer the target person's mean dlib embedding than the
source person's), both mean distances, the flicker ratio (frame-to-frame change inside
the face region, output over input) and the PSNR of the background (outside the
dilated face boxes). Writes small JSON files that DVC tracks as metrics."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from flax import nnx
from tqdm import tqdm

from . import faces, figures, identity, media
from .convert import load_model
from .detect import load_alignments, load_frames_index
from .errors import FacepipeError
from .fsutil import atomic_path, write_json
from .input_pipeline import center_faces, load_dataset
from .models import FaceSwapModel, ModelSettings
from .train import reconstruct, ssim

BATCH = 16


def _rebuild(model: FaceSwapModel, faces: np.ndarray, side: str) -> np.ndarray:
    return np.concatenate([np.asarray(reconstruct(model, faces[i:i + BATCH], side))
                           for i in range(0, len(faces), BATCH)])


def evaluate_pair(model_dir: str | Path, dataset_a: str | Path, dataset_b: str | Path) -> tuple[dict, list]:
    model, info = load_model(model_dir)
    untrained = FaceSwapModel(ModelSettings.from_json(info["model"]), rngs=nnx.Rngs(0))
    resolution, coverage = info["model"]["resolution"], info["coverage"]
    result, stills = {"steps": info["steps"]}, []
    for side, dataset in (("a", dataset_a), ("b", dataset_b)):
        faces = center_faces(load_dataset(dataset, "holdout"), resolution, coverage)
        rebuilt, baseline = _rebuild(model, faces, side), _rebuild(untrained, faces, side)
        stills += [(_to_uint8(f), _to_uint8(r)) for f, r in zip(faces[:4], rebuilt[:4])]
        result[side] = {
            "person": info["people"][side],
            "held_out_faces": len(faces),
            "mae": round(float(np.abs(rebuilt - faces).mean()), 5),
            "ssim": round(float(ssim(faces, rebuilt)), 4),
            "untrained_mae": round(float(np.abs(baseline - faces).mean()), 5),
        }
    return result, stills


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box_mask(shape, boxes, grow: float = 0.0) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        dx, dy = grow * (x1 - x0), grow * (y1 - y0)
        mask[max(0, int(y0 - dy)):int(np.ceil(y1 + dy)), max(0, int(x0 - dx)):int(np.ceil(x1 + dx))] = True
    return mask


def _faces_with_identity(detector: faces.Detector, embedder: faces.Embedder, rgb: np.ndarray) -> list[dict]:
    found = faces.find_faces(detector, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return [{"box": face.box, "embedding": embedder(rgb, face.landmarks)} for face in found]


def evaluate_swap(video: str | Path, frames_dir: str | Path, faces_dir: str | Path, source_dataset: str | Path,
                  target_dataset: str | Path, settings: dict, swapped_runs: dict[str, list] | None = None,
                  side_by_side: bool = False) -> tuple[dict, list]:
    """Scores the faces convert swapped (`swapped_runs` of its report: per track, runs of
    frames; all faces when None); every other pixel, faces left alone included, counts as
    background. A side-by-side output is judged by its swapped half, and a scaled one at
    the input's size. Returns the metrics and still (original, swapped) pairs."""
    index = load_frames_index(Path(frames_dir))
    alignments = load_alignments(faces_dir)
    swapped = None if swapped_runs is None else {
        (int(track), frame) for track, runs in swapped_runs.items() for first, last in runs
        for frame in range(first, last + 1)}
    boxes: dict[int, list] = {}
    for face in alignments["faces"]:
        if swapped is None or (face["track"], face["frame"]) in swapped:
            boxes.setdefault(face["frame"], []).append(face["box"])
    source_mean, target_mean = identity.person_embedding(source_dataset), identity.person_embedding(target_dataset)
    detector, embedder = faces.Detector(0.5), faces.Embedder()
    inputs = media.read_frames(media.probe(index["video"]), index["start"] or None, index["duration"])
    output_info = media.probe(video)
    to_source, to_target, stills, frames_scored = [], [], [], 0
    still_at = set(np.linspace(0, max(index["count"] - 1, 0), 4).round().astype(int).tolist())
    change_in, change_out, background_err, background_px = [], [], 0.0, 0
    previous = None
    for i, (original, swapped) in enumerate(tqdm(zip(inputs, media.read_frames(output_info)), total=index["count"],
                                                  desc=f"evaluate {Path(video).stem}", unit="frame")):
        if side_by_side:
            swapped = swapped[:, swapped.shape[1] // 2:]
        if swapped.shape != original.shape:
            swapped = cv2.resize(swapped, original.shape[1::-1], interpolation=cv2.INTER_AREA)
        if i in still_at:
            stills.append((original, swapped))
        frame_boxes = boxes.get(i, [])
        found = _faces_with_identity(detector, embedder, swapped) if frame_boxes else []
        scored_before = len(to_source)
        for box in frame_boxes:
            match = max(found, key=lambda f: _iou(f["box"], box), default=None)
            if match is not None and _iou(match["box"], box) > 0.3:
                embedding = np.asarray(match["embedding"])
                to_source.append(float(np.linalg.norm(embedding - source_mean)))
                to_target.append(float(np.linalg.norm(embedding - target_mean)))
        frames_scored += len(to_source) > scored_before
        a, b = original.astype(np.float32), swapped.astype(np.float32)
        face_region = _box_mask(a.shape, frame_boxes)
        if previous is not None and face_region.any():
            change_in.append(np.abs(a - previous[0])[face_region].mean())
            change_out.append(np.abs(b - previous[1])[face_region].mean())
        previous = (a, b)
        outside = ~_box_mask(a.shape, frame_boxes, settings["dilate"])
        background_err += float(((a - b)[outside] ** 2).sum())
        background_px += int(outside.sum()) * 3
    scored = len(to_source)
    result = {
        "frames": index["count"],
        "frames_scored": frames_scored,
        "faces_scored": scored,
        "identity_transfer_rate": round(float(np.mean(np.array(to_target) < np.array(to_source))), 4) if scored else None,
        "mean_distance_to_source": round(float(np.mean(to_source)), 4) if scored else None,
        "mean_distance_to_target": round(float(np.mean(to_target)), 4) if scored else None,
        "flicker_ratio": round(float(np.mean(change_out) / max(np.mean(change_in), 1e-6)), 4) if change_in else None,
        "background_psnr": (round(float(10 * np.log10(255 ** 2 / max(background_err / background_px, 1e-10))), 2)
                            if background_px else None),
    }
    if not scored:
        print(f"evaluate: no faces detected in {video} where the input had faces: 0 frames scored")
    return result, stills


def _write_table(path, title: str, rows) -> None:
    if path:
        with atomic_path(path) as tmp:
            tmp.write_text(figures.metrics_table(title, rows))


def _write_strip(path, stills) -> None:
    if path and stills:
        with atomic_path(path) as tmp:
            media.write_image(tmp, figures.before_after_strip(stills), quality=90)


def run_pair(model_dir, dataset_a, dataset_b, out, table=None, strip=None) -> dict:
    result, stills = evaluate_pair(model_dir, dataset_a, dataset_b)
    write_json(out, result)
    rows = [("steps", result["steps"])] + [(f"{result[s]['person']} ({s.upper()}): {k}", v)
                                           for s in ("a", "b") for k, v in result[s].items() if k != "person"]
    _write_table(table, f"Reconstruction on held-out faces: {Path(model_dir).name}", rows)
    _write_strip(strip, stills)
    return result


def run_swap(video, frames_dir, faces_dir, source_dataset, target_dataset, out, settings, table=None,
             strip=None, swap_report=None) -> dict:
    if swap_report and not Path(swap_report).is_file():
        raise FacepipeError(f"{swap_report}: convert's report is missing; run convert first")
    report = json.loads(Path(swap_report).read_text()) if swap_report else {}
    result, stills = evaluate_swap(video, frames_dir, faces_dir, source_dataset, target_dataset, settings,
                                   report.get("swapped_runs"), report.get("side_by_side", False))
    write_json(out, result)
    _write_table(table, f"Swap metrics: {Path(video).stem}", list(result.items()))
    _write_strip(strip, stills)
    return result
