"""filter: keep the good faces of the right person as a training dataset.

Each face of the person's clips is judged in turn; the first reason that applies drops
it, and every reason is counted in the report and shown on the contact sheet:

- `score`: RetinaFace confidence under `filter.min_score`;
- `size`: box side under `filter.min_size` px;
- `blur`: variance of the Laplacian of the aligned crop under `filter.min_sharpness`;
- `pose`: head turned more than `filter.max_yaw` degrees (read off the landmarks);
- `identity`: not the person. With a `reference` photo, faces farther than
  `filter.max_distance` from it (dlib embedding); without one, the faces are clustered
  by embedding and the cluster seen in the most frames is kept. A pool of anyone's faces
  (`--anyone`, for pretraining) skips this check;
- `duplicate`: nearly the same picture as the last kept face of its track (mean
  difference of small grey thumbnails under `filter.min_difference`), which adds
  nothing to training.

Identity is judged per track from faces sampled every `filter.identity_interval`
seconds (see identity.py). A share `filter.holdout` of the kept faces is held out from
training for evaluate. Writes the dataset folder (format in formats/dataset.py: each face's
split, track and landmarks, and the person's mean embedding and its spread), a JSON
report and a contact sheet."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from . import align, faces, figures, identity, media
from .errors import FacepipeError
from .formats import dataset
from .formats.alignments import open_crops, read, read_crop
from .fsutil import atomic_dir, atomic_path, write_json
from .settings import FilterSettings

REASONS = ("score", "size", "blur", "pose", "identity", "duplicate")
SHEET_FACES = 24  # thumbnails per contact sheet row group


def is_holdout(name: str, share: float) -> bool:
    """Deterministic held-out split by file name: the same faces are held out on every
    machine and every rerun, and training never sees them."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 10_000 < share * 10_000


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian over the central face region: low means blurred."""
    size = crop.shape[0]
    pad = int(align.PADDING_FRACTION * size)
    gray = cv2.cvtColor(crop[pad:size - pad, pad:size - pad], cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """32x32 grey image of the central face region, values in [0, 1]."""
    size = crop.shape[0]
    pad = int(align.PADDING_FRACTION * size)
    gray = cv2.cvtColor(crop[pad:size - pad, pad:size - pad], cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def yaw(face: dict, crop_size: int) -> float:
    return faces.head_pose(identity.crop_points(face), crop_size, crop_size)[0]


class _Clip:
    """One detect output of the person: its faces, each tagged with a track key that is
    unique across the person's clips."""

    def __init__(self, number: int, faces_dir: Path):
        self.dir = faces_dir
        self.alignments = read(faces_dir)
        self.fps = media.frame_rate(self.alignments["fps"])
        self.faces = [dict(face, track=(number, face["track"]), _clip=self) for face in self.alignments["faces"]]
        self.crops = open_crops(faces_dir)


def _spread_out(face_list: list[dict]) -> list[np.ndarray]:
    """Crops of up to SHEET_FACES faces, evenly spread over the list (so over the clips)."""
    picks = np.linspace(0, len(face_list) - 1, min(len(face_list), SHEET_FACES)).round().astype(int)
    return [read_crop(face_list[i]["_clip"].crops, face_list[i]["crop"]) for i in sorted(set(picks.tolist()))]


def _judge_quality(clips: list[_Clip], settings: FilterSettings, drop) -> list[dict]:
    """Drops faces for score, size, blur and pose; returns the others."""
    survivors = []
    for clip in clips:
        crop_size = clip.alignments["crop_size"]
        for face in tqdm(clip.faces, desc=f"quality {clip.dir.name}", unit="face"):
            x0, y0, x1, y1 = face["box"]
            if face["score"] < settings.min_score:
                drop(face, "score")
                continue
            if min(x1 - x0, y1 - y0) < settings.min_size:
                drop(face, "size")
                continue
            crop = read_crop(clip.crops, face["crop"])
            if sharpness(crop) < settings.min_sharpness:
                drop(face, "blur")
            elif abs(yaw(face, crop_size)) > settings.max_yaw:
                drop(face, "pose")
            else:
                face["_thumb"] = thumbnail(crop)  # for the duplicate check
                survivors.append(face)
    return survivors


def _judge_identity(clips: list[_Clip], survivors: list[dict], settings: FilterSettings, reference: np.ndarray | None,
                    workers: int) -> tuple[list[bool], np.ndarray | None, dict | None, dict]:
    """Whether each survivor is the person, the person's mean embedding and the spread of
    their sampled faces around it, and the report."""
    picked, blocks = [], [np.zeros((0, 128), np.float32)]
    for clip in clips:
        members = [i for i, face in enumerate(survivors) if face["_clip"] is clip]
        chosen, embedded = identity.embed_samples(clip.dir, [survivors[i] for i in members], clip.fps,
                                                  settings.identity_interval, workers)
        picked += [members[i] for i in chosen]
        blocks.append(embedded)
    embeddings = np.concatenate(blocks)
    report: dict = {"samples": len(picked), "max_distance": settings.max_distance}
    if not picked:
        report["mode"] = "reference" if reference is not None else "clusters"
        return [], None, None, report
    if reference is not None:
        distances = identity.distances_to(survivors, picked, embeddings, reference)
        same = [d is not None and d <= settings.max_distance for d in distances]
        report.update(mode="reference", nearest_distance=round(min(d for d in distances if d is not None), 4))
    else:
        labels = identity.clusters_of(survivors, picked, embeddings, settings.max_distance)
        sizes: dict[int, dict] = {}
        for face, label in zip(survivors, labels):
            info = sizes.setdefault(label, {"faces": 0, "frames": set()})
            info["faces"] += 1
            info["frames"].add((face["track"][0], face["frame"]))  # (clip, frame)
        # The person is the one seen in the most frames.
        ranked = sorted(sizes, key=lambda c: (-len(sizes[c]["frames"]), -sizes[c]["faces"], c))
        same = [label == ranked[0] for label in labels]
        report.update(mode="clusters", kept_cluster=1, clusters=[
            {"cluster": rank + 1, "faces": sizes[c]["faces"], "frames": len(sizes[c]["frames"]), "kept": rank == 0}
            for rank, c in enumerate(ranked)])
    person_rows = [row for row, i in enumerate(picked) if same[i]]
    if not person_rows:
        return same, None, None, report
    mean = embeddings[person_rows].mean(0)
    distances = np.linalg.norm(embeddings[person_rows] - mean, axis=1)
    spread = {f"p{q}": round(float(np.percentile(distances, q)), 4) for q in (50, 90)}
    return same, mean, spread, report


def _write_dataset(out_dir, person: str, kept: list[dict], mean_embedding, spread, samples: int,
                   settings: FilterSettings) -> list[dict]:
    with atomic_dir(out_dir) as tmp:
        (tmp / "faces").mkdir()
        records = []
        for face in kept:
            clip = face["_clip"]
            name = f"faces/{clip.dir.name}_{face['frame']:06d}_{face['face']}.jpg"
            (tmp / name).write_bytes(clip.crops.read(face["crop"]))
            records.append({"file": name, "clip": clip.dir.name, "frame": face["frame"], "face": face["face"],
                            "track": face["track"][1],
                            "split": "holdout" if is_holdout(name, settings.holdout) else "train",
                            "landmarks": identity.crop_points(face).round(2).tolist()})
        # Whatever the hashes say, a person with 2 faces or more has both splits: training
        # needs one, evaluate the other.
        if len(records) > 1 and all(r["split"] == "holdout" for r in records):
            records[0]["split"] = "train"
        if len(records) > 1 and all(r["split"] == "train" for r in records):
            records[-1]["split"] = "holdout"
        dataset.write_index(tmp, person, records, mean_embedding, samples, spread)
    return records


def run(*, faces_dirs: list[str | Path], reference: str | None = None, out_dir: str | Path, report_path: str | Path,
        sheet_path: str | Path | None = None, settings: FilterSettings, person: str, anyone: bool = False,
        workers: int = 2) -> dict:
    """Keep `person`'s good faces; with `anyone`, every good face whoever it shows (a pool
    of faces for pretraining: no identity check, no identity in the dataset)."""
    reference_embedding = identity.reference_embedding(reference) if reference else None
    clips = [_Clip(n, Path(d)) for n, d in enumerate(faces_dirs)]
    shown: dict[str, list[dict]] = {reason: [] for reason in ("kept",) + REASONS}  # faces per sheet row

    def drop(face, reason):
        shown[reason].append(face)

    survivors = _judge_quality(clips, settings, drop)
    if anyone:
        same, mean_embedding, spread, identity_report = [True] * len(survivors), None, None, {"mode": "anyone",
                                                                                              "samples": 0}
    else:
        same, mean_embedding, spread, identity_report = _judge_identity(clips, survivors, settings,
                                                                        reference_embedding, workers)
    kept, last_thumb = shown["kept"], {}
    for face, is_person in zip(survivors, same):
        previous = last_thumb.get(face["track"])
        if not is_person:
            drop(face, "identity")
        elif previous is not None and np.abs(face["_thumb"] - previous).mean() < settings.min_difference:
            drop(face, "duplicate")
        else:
            last_thumb[face["track"]] = face["_thumb"]
            kept.append(face)

    dropped = {reason: len(shown[reason]) for reason in REASONS}
    per_source = {clip.dir.name: {"source": clip.alignments["source"], "frames": clip.alignments["frame_count"],
                                  "faces": len(clip.faces), "tracks": len(clip.alignments["tracks"]),
                                  "kept": sum(face["_clip"] is clip for face in kept)} for clip in clips}
    if not kept:
        found = "; ".join(f"{s['source']}: {s['faces']} faces in {s['frames']} frames" for s in per_source.values())
        lost = ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none"
        raise FacepipeError(f"filter: person {person!r} has no usable faces ({found}; dropped: {lost}); "
                            "use sources that show this person's face or relax the filter section of params.yaml")
    records = _write_dataset(out_dir, person, kept, mean_embedding, spread, identity_report["samples"], settings)
    report = {"person": person, "reference": reference, "found": sum(len(c.faces) for c in clips),
              "kept": len(kept), "held_out": sum(r["split"] == "holdout" for r in records), "dropped": dropped,
              "identity": identity_report, "sources": per_source}
    write_json(report_path, report)
    if sheet_path:
        rows = [(f"{person}: kept ({len(kept)} faces)", _spread_out(kept))]
        rows += [(f"dropped: {reason} ({dropped[reason]} faces)", _spread_out(shown[reason])) for reason in REASONS]
        with atomic_path(sheet_path) as tmp_sheet:
            media.write_image(tmp_sheet, figures.contact_sheet(rows), quality=90)
    for clip in clips:
        clip.crops.close()
    print(f"filter: {person}: kept {len(kept)} of {report['found']} faces; dropped "
          + ", ".join(f"{reason} {count}" for reason, count in dropped.items()))
    return report
