"""evaluate: measure a build, so every later change can be judged by numbers.

Per pair: reconstruction MAE and SSIM of A->A and B->B on the held-out faces (never
trained on), over the model's view and over the face alone, beside the untrained
model's MAE. Per swap, over the faces convert
swapped, what a viewer would notice:

- identity: the share of output faces nearer the target person's mean dlib embedding
  than the source person's, both mean distances, the share within the target's own
  spread of faces, and the share whose nearest person, of every person the build
  knows, is the target;
- expression: how closely the output's mouth and eye opening follow the input's
  (correlation over the frames), and pose: how far its yaw and pitch stray from the
  input's, both from landmarks found afresh on output and input frames;
- sharpness: the detail of the inner face (eyes, nose, mouth) against the input's, both
  at the model's resolution, so 1 means all the detail the model can draw;
- seam: gradient energy along the edge of convert's mask against the input's (1: no
  visible edge);
- the flicker ratio (frame-to-frame change inside the face region, output over input)
  and the PSNR of the background (outside the dilated face boxes).

Writes small JSON files that DVC tracks as metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from flax import nnx
from tqdm import tqdm

from . import align, faces, figures, media
from .align import cut_face
from .formats import dataset, model_folder, swap_report
from .formats.alignments import read as read_alignments
from .formats.frames_index import read as read_frames_index
from .fsutil import atomic_path, write_json
from .input_pipeline import BACKGROUND, center_faces, center_regions, load_faces
from .losses import SSIM_MARGIN, ssim_map
from .masks import face_mask
from .models import FaceSwapModel, ModelSettings, reconstruct
from .settings import EvaluateSettings

BATCH = 16

# dlib's 68 landmarks (0-based): upper and lower points of the inner lips and of the
# eyelids, whose distances are how open the mouth and the eyes are.
INNER_LIPS = ((61, 67), (62, 66), (63, 65))
EYELIDS = ((37, 41), (38, 40), (43, 47), (44, 46))
INNER_FACE = slice(27, 68)  # nose, eyes, mouth: the face's detail, well inside the pasted region
# The seam band: where convert's mask mixes new face and frame. Past 0.95 the pixel is
# the new face's own (its gradients are face detail, which sharpness judges), below 0.05
# it is the frame's, identical to the input; the edge, if one shows, lies in between.
SEAM_BAND = (0.05, 0.95)


def _rebuild(model: FaceSwapModel, faces: np.ndarray, side: str) -> np.ndarray:
    return np.concatenate([np.asarray(reconstruct(model, faces[i:i + BATCH], side))
                           for i in range(0, len(faces), BATCH)])


def evaluate_pair(model_dir: str | Path, dataset_a: str | Path, dataset_b: str | Path) -> tuple[dict, list]:
    """Reconstruction of each person's held-out faces: over the model's whole view, and
    over the face alone (the landmark hull, grown as training's face region), which is
    what convert pastes."""
    model, info = model_folder.load(model_dir, "evaluate")
    untrained = FaceSwapModel(ModelSettings.from_json(info["model"]), dtype=model.encoder.dtype, rngs=nnx.Rngs(0))
    resolution, coverage = info["model"]["resolution"], info["coverage"]
    result, stills = {"steps": info["steps"]}, []
    margin = SSIM_MARGIN
    for side, dataset_dir in (("a", dataset_a), ("b", dataset_b)):
        held_out = load_faces([dataset_dir], "holdout")
        faces = center_faces(held_out, resolution, coverage)
        face = center_regions(held_out, resolution, coverage) > BACKGROUND
        rebuilt, baseline = _rebuild(model, faces, side), _rebuild(untrained, faces, side)
        stills += [(_to_uint8(f), _to_uint8(r)) for f, r in zip(faces[:4], rebuilt[:4])]
        similarity = np.asarray(ssim_map(faces, rebuilt))
        result[side] = {
            "person": info["people"][side],
            "held_out_faces": len(faces),
            "mae": round(float(np.abs(rebuilt - faces).mean()), 5),
            "ssim": round(float(similarity.mean()), 4),
            "face_mae": round(float(np.abs(rebuilt - faces)[face].mean()), 5),
            "face_ssim": round(float(similarity[face[:, margin:-margin, margin:-margin]].mean()), 4),
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


def _matching(found: list[faces.Face], box) -> faces.Face | None:
    """The detected face that is the aligned face in `box`, if any."""
    match = max(found, key=lambda f: _iou(f.box, box), default=None)
    return match if match is not None and _iou(match.box, box) > 0.3 else None


def _model_view(model_dir: str | Path) -> tuple[int, float]:
    """The model's resolution and coverage (the share of the crop it draws), from model.json."""
    info = model_folder.read_info(model_dir)
    return info["model"]["resolution"], info["coverage"]


def openings(points: np.ndarray) -> tuple[float, float]:
    """How open the mouth and the eyes are (mean gap of the inner lips, of the eyelids),
    in eye distances, so that face size and distance to the camera cancel out."""
    points = np.asarray(points, np.float64)
    eye_distance = np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0))

    def gap(pairs):
        return float(np.mean([np.linalg.norm(points[i] - points[j]) for i, j in pairs]) / eye_distance)

    return gap(INNER_LIPS), gap(EYELIDS)


def inner_face_detail(crops: np.ndarray, points_crop: np.ndarray, resolution: int, coverage: float) -> np.ndarray:
    """Variance of the Laplacian of the grey image inside the inner face (hull of
    landmarks 27-67), per crop, seen as the model sees a face: its drawn region taken
    down to `resolution` px."""
    size = crops.shape[1]
    pad = int(round(size * (1 - coverage) / 2))
    points = (np.asarray(points_crop)[INNER_FACE] - pad) * resolution / (size - 2 * pad)
    region = np.zeros((resolution, resolution), np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(points.round().astype(np.int32)), 1)
    inside = region.astype(bool)
    views = center_faces(crops, resolution, coverage)
    greys = [cv2.cvtColor(view, cv2.COLOR_RGB2GRAY).astype(np.float64) for view in views]
    return np.array([cv2.Laplacian(grey, cv2.CV_64F)[inside].var() for grey in greys])


def seam_band(mask: np.ndarray) -> np.ndarray:
    """The pixels of the mask's edge: where it mixes new face and frame, and for a hard
    mask (no feathering, no such pixels) the pixels on both sides of its edge."""
    low, high = SEAM_BAND
    edge = cv2.morphologyEx((mask >= 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    return ((mask > low) & (mask < high)) | edge.astype(bool)


def gradient_energy(crops: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Summed squared Sobel magnitude of the grey image inside `band`, per crop."""
    energies = []
    for crop in crops:
        grey = cv2.cvtColor(crop.astype(np.float32), cv2.COLOR_RGB2GRAY).astype(np.float64)
        gx, gy = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3)
        energies.append(float((gx ** 2 + gy ** 2)[band].sum()))
    return np.array(energies)


def _correlation(output: np.ndarray, original: np.ndarray) -> float | None:
    """Pearson correlation; None where it means nothing (under 3 frames, or a constant)."""
    if len(output) < 3 or np.ptp(output) == 0 or np.ptp(original) == 0:
        return None
    return round(float(np.corrcoef(output, original)[0, 1]), 4)


def _share(flags: list[bool]) -> float | None:
    return round(float(np.mean(flags)), 4) if flags else None


def _mean(values: list[float], digits: int) -> float | None:
    return round(float(np.mean(values)), digits) if values else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator > 0 else None


def evaluate_swap(video: str | Path, frames_dir: str | Path, faces_dir: str | Path, model_dir: str | Path,
                  source_dataset: str | Path, target_dataset: str | Path, people: list[str | Path],
                  settings: EvaluateSettings, report: dict) -> tuple[dict, list]:
    """Scores the faces convert swapped, as its `report` says (`swapped_runs`: per track,
    runs of frames; `mask` and `coverage`: the mask it blended them through); every
    other pixel, faces left alone included, counts as background. Identity, expression
    and pose need the face found again in the output; sharpness and seam are measured
    on every swapped face, found or not, so a smudge no detector sees still counts.
    `people` are the datasets of every person the build knows (source and target count
    whether listed or not). A side-by-side output is judged by its swapped half, and a
    scaled one at the input's size. Returns the metrics and still (original, swapped) pairs."""
    index = read_frames_index(frames_dir)
    alignments = read_alignments(faces_dir)
    crop_size = alignments["crop_size"]
    resolution, coverage = _model_view(model_dir)
    swapped = {(int(track), frame) for track, runs in report["swapped_runs"].items() for first, last in runs
               for frame in range(first, last + 1)}
    by_frame: dict[int, list[dict]] = {}
    for face in alignments["faces"]:
        if (face["track"], face["frame"]) in swapped:
            by_frame.setdefault(face["frame"], []).append(face)
    source_mean, target_mean = dataset.person_embedding(source_dataset), dataset.person_embedding(target_dataset)
    target_spread = dataset.identity_spread(target_dataset)["p90"]
    target_person = dataset.read_index(target_dataset)["person"]
    known = {dataset.read_index(d)["person"]: dataset.person_embedding(d)
             for d in [source_dataset, target_dataset, *people]}
    names, means = list(known), np.stack(list(known.values()))
    detector, embedder = faces.Detector(0.5), faces.Embedder()
    inputs = media.read_frames(media.probe(index["video"]), index["start"] or None, index["duration"])
    output_info = media.probe(video)
    to_source, to_target, within_spread, retrieved, stills, frames_scored = [], [], [], [], [], 0
    opening_out, opening_in, yaw_diff, pitch_diff = [], [], [], []  # (mouth, eyes) per face found in both
    detail, seam = np.zeros(2), np.zeros(2)  # summed over faces: output, input
    still_at = set(np.linspace(0, max(index["count"] - 1, 0), 4).round().astype(int).tolist())
    change_in, change_out, background_err, background_px = [], [], 0.0, 0
    previous = None
    for i, (original, output) in enumerate(tqdm(zip(inputs, media.read_frames(output_info)), total=index["count"],
                                                desc=f"evaluate {Path(video).stem}", unit="frame")):
        if report["side_by_side"]:
            output = output[:, output.shape[1] // 2:]
        if output.shape != original.shape:
            output = cv2.resize(output, original.shape[1::-1], interpolation=cv2.INTER_AREA)
        if i in still_at:
            stills.append((original, output))
        frame_faces = by_frame.get(i, [])
        height, width = original.shape[:2]
        # The same detector on both frames, so that output and input landmarks compare fairly.
        found_out = faces.find_faces(detector, cv2.cvtColor(output, cv2.COLOR_RGB2BGR)) if frame_faces else []
        found_in = faces.find_faces(detector, cv2.cvtColor(original, cv2.COLOR_RGB2BGR)) if frame_faces else []
        scored_before = len(to_source)
        for face in frame_faces:
            matrix = np.asarray(face["matrix"], np.float64)
            points_crop = align.transform_points(face["landmarks"], matrix)
            crops = np.stack([cut_face(output, face, crop_size), cut_face(original, face, crop_size)])
            detail += inner_face_detail(crops, points_crop, resolution, coverage)
            mask = face_mask(points_crop, crop_size, report["coverage"], report["mask"]["erode"],
                             report["mask"]["blur"], report["mask"]["kind"])
            seam += gradient_energy(crops, seam_band(mask))
            out_face = _matching(found_out, face["box"])
            if out_face is None:
                continue
            embedding = embedder(output, out_face.landmarks)
            to_source.append(float(np.linalg.norm(embedding - source_mean)))
            to_target.append(float(np.linalg.norm(embedding - target_mean)))
            within_spread.append(to_target[-1] < target_spread)
            retrieved.append(names[int(np.argmin(np.linalg.norm(means - embedding, axis=1)))] == target_person)
            in_face = _matching(found_in, face["box"])
            if in_face is None:
                continue
            opening_out.append(openings(out_face.landmarks))
            opening_in.append(openings(in_face.landmarks))
            (out_yaw, out_pitch), (in_yaw, in_pitch) = (faces.head_pose(out_face.landmarks, width, height),
                                                        faces.head_pose(in_face.landmarks, width, height))
            if np.isfinite([out_yaw, out_pitch, in_yaw, in_pitch]).all():  # solvePnP can fail
                yaw_diff.append(abs(out_yaw - in_yaw))
                pitch_diff.append(abs(out_pitch - in_pitch))
        frames_scored += len(to_source) > scored_before
        a, b = original.astype(np.float32), output.astype(np.float32)
        boxes = [face["box"] for face in frame_faces]
        face_region = _box_mask(a.shape, boxes)
        if previous is not None and face_region.any():
            change_in.append(np.abs(a - previous[0])[face_region].mean())
            change_out.append(np.abs(b - previous[1])[face_region].mean())
        previous = (a, b)
        outside = ~_box_mask(a.shape, boxes, settings.dilate)
        background_err += float(((a - b)[outside] ** 2).sum())
        background_px += int(outside.sum()) * 3
    scored = len(to_source)
    opening_out, opening_in = np.reshape(opening_out, (-1, 2)), np.reshape(opening_in, (-1, 2))
    result = {
        "frames": index["count"],
        "frames_scored": frames_scored,
        "faces_scored": scored,
        "identity_transfer_rate": _share([t < s for t, s in zip(to_target, to_source)]),
        "identity_within_spread": _share(within_spread),
        "identity_retrieval_rate": _share(retrieved),
        "mean_distance_to_source": _mean(to_source, 4),
        "mean_distance_to_target": _mean(to_target, 4),
        "expression_mouth_correlation": _correlation(opening_out[:, 0], opening_in[:, 0]),
        "expression_eye_correlation": _correlation(opening_out[:, 1], opening_in[:, 1]),
        "pose_yaw_difference": _mean(yaw_diff, 2),
        "pose_pitch_difference": _mean(pitch_diff, 2),
        "sharpness": _ratio(*detail),
        "seam": _ratio(*seam),
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


@dataclass(frozen=True)
class SwapInputs:
    """What a swap's evaluation reads besides the model: convert's video and report, the
    clip's frames and faces, the datasets of the person shown and the one swapped in, and
    every person's (to tell whom the output looks like)."""
    video: Path
    report: Path
    frames_dir: Path
    faces_dir: Path
    source_dataset: Path
    target_dataset: Path
    people: list[Path]


def run(*, model_dir: str | Path, pair: tuple[str | Path, str | Path] | None = None, swap: SwapInputs | None = None,
        out: str | Path, table: str | Path | None = None, strip: str | Path | None = None,
        settings: EvaluateSettings) -> dict:
    """Measure a trained pair (its two datasets in `pair`) or a rendered swap (`swap`)."""
    if pair is not None:
        result, stills = evaluate_pair(model_dir, *pair)
        rows = [("steps", result["steps"])] + [(f"{result[s]['person']} ({s.upper()}): {k}", v)
                                               for s in ("a", "b") for k, v in result[s].items() if k != "person"]
        title = f"Reconstruction on held-out faces: {Path(model_dir).name}"
    else:
        report = swap_report.read(swap.report)
        result, stills = evaluate_swap(swap.video, swap.frames_dir, swap.faces_dir, model_dir, swap.source_dataset,
                                       swap.target_dataset, swap.people, settings, report)
        rows, title = list(result.items()), f"Swap metrics: {Path(swap.video).stem}"
    write_json(out, result)
    _write_table(table, title, rows)
    _write_strip(strip, stills)
    return result
