"""convert: render the swap.

For every frame of the swap's clip, each aligned face is encoded and decoded with the
other person's decoder (in batches), masked with the blurred landmark hull, colour
matched, warped back and blended; frames without a face pass through untouched. The
video is encoded at the source rate with the source audio of the same range, and its
container is tagged as synthetic media."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from . import align, identity, media
from .detect import load_alignments
from .errors import FacepipeError
from .fsutil import write_json
from .input_pipeline import center_faces
from .models import FaceSwapModel, ModelSettings, load_weights

CHUNK_FRAMES = 16


def load_model(model_dir: str | Path) -> tuple[FaceSwapModel, dict]:
    model_dir = Path(model_dir)
    info_file = model_dir / "model.json"
    if not info_file.is_file():
        raise FacepipeError(f"{model_dir}: no model.json; run the train stage first")
    info = json.loads(info_file.read_text())
    model = FaceSwapModel(ModelSettings.from_json(info["model"]), rngs=nnx.Rngs(0))
    try:
        load_weights(model, (model_dir / "weights.msgpack").read_bytes())
    except (ValueError, OSError) as exc:
        raise FacepipeError(f"{model_dir}/weights.msgpack: {exc}; retrain the pair") from None
    return model, info


MASKS = ("hull", "extended")
COLOR_METHODS = ("avg-color", "color-transfer", "match-hist", "seamless-clone", "none")


def mask_points(landmarks_crop: np.ndarray, kind: str) -> np.ndarray:
    """The points whose hull is the mask: the 68 landmarks, and for `extended` the brows
    lifted towards the hairline (by 40% of the brow-to-chin distance)."""
    if kind == "hull":
        return landmarks_crop
    brows = landmarks_crop[17:27]
    up = brows.mean(0) - landmarks_crop[8]  # chin to brows
    return np.concatenate([landmarks_crop, brows + 0.4 * up])


def face_mask(landmarks_crop: np.ndarray, size: int, coverage: float, erode: float, blur: float,
              kind: str = "hull") -> np.ndarray:
    """Blurred mask in crop space, float32 in [0, 1]. `erode` (negative: dilate) and
    `blur` are fractions of the crop size, so the look does not depend on resolution."""
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(mask_points(landmarks_crop, kind).round().astype(np.int32)), 1.0)
    pad = int(round(size * (1 - coverage) / 2))
    limit = np.zeros_like(mask)
    limit[pad:size - pad, pad:size - pad] = 1.0  # the model only drew this region
    mask *= limit
    if erode:
        k = max(1, int(round(abs(erode) * size)))
        mask = (cv2.erode if erode > 0 else cv2.dilate)(mask, np.ones((k, k), np.uint8)) * limit
    if blur > 0:
        k = max(1, int(round(blur * size))) | 1
        mask = cv2.GaussianBlur(mask, (k, k), 0)
        # Fade out towards the edge of the drawn region too, so no square seam shows.
        inner = np.zeros_like(mask)
        inner[pad + k // 2:size - pad - k // 2, pad + k // 2:size - pad - k // 2] = 1.0
        mask *= cv2.GaussianBlur(inner, (k, k), 0) * limit
    return mask


def match_colour(new: np.ndarray, original: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Recolour the model's face (float RGB, 0-255) to the original's, judged under the
    mask: `avg-color` moves the mean; `color-transfer` matches mean and spread per channel
    in Lab (Reinhard et al. 2001); `match-hist` matches each channel's histogram."""
    weights = mask.ravel() / mask.sum()
    if method == "avg-color":
        return new + (original.reshape(-1, 3).T @ weights - new.reshape(-1, 3).T @ weights)
    if method == "color-transfer":
        lab_new = cv2.cvtColor(np.clip(new / 255, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
        lab_old = cv2.cvtColor(np.clip(original / 255, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
        mean_new, mean_old = weights @ lab_new, weights @ lab_old
        std_new = np.sqrt(weights @ (lab_new - mean_new) ** 2)
        std_old = np.sqrt(weights @ (lab_old - mean_old) ** 2)
        lab = (lab_new - mean_new) * (std_old / np.maximum(std_new, 1e-3)) + mean_old
        return cv2.cvtColor(lab.reshape(new.shape).astype(np.float32), cv2.COLOR_Lab2RGB) * 255
    if method == "match-hist":
        out = np.empty_like(new)
        bins = np.arange(257)
        for c in range(3):
            source, reference = new[..., c].ravel(), original[..., c].ravel()
            cdf_new = np.cumsum(np.histogram(source, bins, weights=weights)[0])
            cdf_old = np.cumsum(np.histogram(reference, bins, weights=weights)[0])
            levels = np.interp(cdf_new, cdf_old, bins[:-1])  # new level -> original level of equal rank
            out[..., c] = np.interp(source, bins[:-1], levels).reshape(new.shape[:2])
        return out
    return new


class Swapper:
    """Batched encoder + target decoder over aligned faces."""

    def __init__(self, model: FaceSwapModel, side: str, batch_size: int):
        self.batch_size = batch_size
        graphdef, state = nnx.split(model)

        @jax.jit
        def swap(state, faces):
            m = nnx.merge(graphdef, state)
            return m(faces, side)

        self._swap, self._state = swap, state

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start:start + self.batch_size]
            padded = np.zeros((self.batch_size,) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            out.append(np.asarray(self._swap(self._state, padded))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0,) + faces.shape[1:], np.float32)


def composite(frame: np.ndarray, face: dict, swapped: np.ndarray, crop_size: int, coverage: float,
              settings: dict) -> None:
    """Blend one swapped face (model output, float [0,1]) into `frame` in place."""
    matrix = np.asarray(face["matrix"], np.float64)
    region = int(round(crop_size * coverage))
    pad = (crop_size - region) // 2
    original = cv2.warpAffine(frame, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    new = original.copy()
    new[pad:pad + region, pad:pad + region] = cv2.resize(swapped * 255.0, (region, region),
                                                         interpolation=cv2.INTER_CUBIC)
    mask = face_mask(align.transform_points(face["landmarks"], matrix), crop_size, coverage,
                     settings["mask_erode"], settings["mask_blur"], settings["mask"])
    if mask.sum() > 1:
        new = match_colour(new, original, mask, settings["color_match"])
    new = np.clip(new, 0, 255)
    # Warp back only into the face's bounding region of the frame: same result, less work.
    inverse = cv2.invertAffineTransform(matrix)
    corners = align.transform_points([[0, 0], [crop_size, 0], [0, crop_size], [crop_size, crop_size]], inverse)
    h, w = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    to_roi = inverse.copy()
    to_roi[:, 2] -= (x0, y0)
    size = (int(x1 - x0), int(y1 - y0))
    new_roi = cv2.warpAffine(new, to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask_roi = cv2.warpAffine(mask, to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    roi = frame[y0:y1, x0:x1]
    if settings["color_match"] == "seamless-clone":
        new_roi = seamless_clone(new_roi, roi, mask_roi[..., 0])
    blended = roi.astype(np.float32) * (1 - mask_roi) + new_roi * mask_roi
    frame[y0:y1, x0:x1] = np.clip(blended, 0, 255).round().astype(np.uint8)


def seamless_clone(new: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson blending (cv2.seamlessClone) of the new face into the frame region: the
    face keeps its own detail but takes its colour and light from the frame around it."""
    binary = (mask > 0.5).astype(np.uint8) * 255
    if not binary.any():
        return new
    # Margins, so the solver never meets the region's border; then the mask's box centre
    # is where OpenCV puts the clone, which keeps the face where it was.
    pad = 8
    src = cv2.copyMakeBorder(np.clip(new, 0, 255).astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    dst = cv2.copyMakeBorder(background, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    binary = cv2.copyMakeBorder(binary, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(binary)
    cloned = cv2.seamlessClone(src, dst, binary, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return cloned[pad:-pad, pad:-pad].astype(np.float32)


def check_model_fits(info: dict, alignments: dict, model_dir: Path, faces_dir: Path) -> None:
    """The model can only draw faces aligned the way its training faces were."""
    trained = info.get("padding_fraction")
    here = alignments["padding"] / alignments["crop_size"]
    if trained is None or abs(trained - here) > 1e-6:
        raise FacepipeError(f"convert: {model_dir} learned faces with a margin of {trained} of the crop around the "
                            f"mean face, but {faces_dir}/alignments.json has {here:g}; retrain the pair on faces from "
                            "this facepipe, or redo detect with the version the model was trained with")


def source_faces(faces_dir: Path, alignments: dict, source_dataset: Path, person: str, settings: dict,
                 workers: int) -> list[dict]:
    """The faces of the clip that are the source person (all of them when
    `convert.max_distance` is null): each track is checked against the person's mean
    embedding from their dataset, at faces sampled every `convert.identity_interval` s."""
    if settings["max_distance"] is None:
        return alignments["faces"]
    mean = identity.person_embedding(source_dataset)
    face_list = alignments["faces"]
    samples, embeddings = identity.embed_samples(faces_dir, face_list, media.frame_rate(alignments["fps"]),
                                                 settings["identity_interval"], workers)
    distances = identity.distances_to(face_list, samples, embeddings, mean)
    chosen = [face for face, d in zip(face_list, distances) if d is not None and d <= settings["max_distance"]]
    if not chosen:
        nearest = min(d for d in distances if d is not None)
        raise FacepipeError(f"convert: none of the {len(face_list)} faces in {alignments['source']} within the swap's "
                            f"range looks like {person} (nearest identity distance {nearest:.2f} > "
                            f"convert.max_distance {settings['max_distance']}); check the swap's 'from', or raise "
                            "convert.max_distance (null swaps every face)")
    return chosen


def run(frames_dir: str | Path, faces_dir: str | Path, model_dir: str | Path, out_video: str | Path,
        swap_from: str, source_dataset: str | Path, settings: dict, report_path: str | Path | None = None,
        workers: int = 2) -> dict:
    index = json.loads((Path(frames_dir) / "frames.json").read_text())
    alignments = load_alignments(faces_dir)
    model, info = load_model(model_dir)
    check_model_fits(info, alignments, Path(model_dir), Path(faces_dir))
    people = info["people"]
    if swap_from not in people.values():
        raise FacepipeError(f"convert: model {model_dir} was trained on {people['a']} and {people['b']}, "
                            f"not on {swap_from!r}")
    target_side = "b" if people["a"] == swap_from else "a"
    if not alignments["faces"]:
        raise FacepipeError(f"convert: no faces in {alignments['source']} within the swap's range "
                            f"({alignments['frame_count']} frames looked at); choose another start/duration")
    chosen = source_faces(Path(faces_dir), alignments, Path(source_dataset), swap_from, settings, workers)
    by_frame: dict[int, list[dict]] = {}
    for face in chosen:
        by_frame.setdefault(face["frame"], []).append(face)

    video = media.probe(index["video"])
    fps = Fraction(index["fps"])
    count = index["count"]
    swapper = Swapper(model, target_side, settings["batch_size"])
    resolution, coverage = info["model"]["resolution"], info["coverage"]
    crop_size = alignments["crop_size"]
    tags = media.SYNTHETIC_TAGS if settings["tag_synthetic"] else {}
    frames = media.read_frames(video, index["start"] or None, index["duration"])
    swapped_faces = 0
    with media.VideoWriter(out_video, video.width, video.height, fps, audio_from=video,
                           audio_start=index["start"] or None, audio_duration=count / float(fps),
                           crf=settings["crf"], tags=tags) as writer:
        progress = tqdm(total=count, desc=f"convert {Path(out_video).stem}", unit="frame")
        done = 0
        while done < count:
            chunk = []
            for frame in frames:
                chunk.append(frame.copy())
                if len(chunk) == CHUNK_FRAMES or done + len(chunk) == count:
                    break
            if not chunk:
                break
            jobs = [(i, face) for i in range(len(chunk)) for face in by_frame.get(done + i, [])]
            crops = [cv2.warpAffine(chunk[i], np.asarray(face["matrix"]), (crop_size, crop_size),
                                    borderMode=cv2.BORDER_REPLICATE) for i, face in jobs]
            outputs = swapper(center_faces(np.stack(crops), resolution, coverage)) if crops else []
            for (i, face), out in zip(jobs, outputs):
                composite(chunk[i], face, out, crop_size, coverage, settings)
            for frame in chunk:
                writer.write(frame)
            swapped_faces += len(jobs)
            done += len(chunk)
            progress.update(len(chunk))
        progress.close()
        if done != count:
            raise FacepipeError(f"convert: {index['video']} gave {done} frames, the clip's frames stage saw {count}")
    report = {"frames": count, "fps": index["fps"], "frames_with_faces": len(by_frame),
              "faces_swapped": swapped_faces, "faces_left": len(alignments["faces"]) - len(chosen),
              "swapped_tracks": sorted({face["track"] for face in chosen}),
              "source": swap_from, "target": people[target_side], "synthetic_tag": bool(tags)}
    if report_path:
        write_json(report_path, report)
    return report
