"""filter: keep the good faces of the right person as a training dataset.

Drops, in this order, faces whose detection score is under `filter.min_score`, whose
box is smaller than `filter.min_size` px, whose aligned crop is blurred (variance of
the Laplacian under `filter.min_sharpness`), and, when the person has a `reference`
photo, faces farther than `filter.max_distance` from it in dlib's embedding space.
A share `filter.holdout` of the kept faces is marked held out (never trained on, used by
evaluate). Writes the dataset folder (`faces/`, `faces.json` with each face's split and
identity embedding) and a JSON report of counts."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from . import figures, media
from .errors import FacepipeError
from .fsutil import atomic_dir, atomic_path, write_json

REASONS = ("score", "size", "blur", "identity")


def is_holdout(name: str, share: float) -> bool:
    """Deterministic held-out split by file name: the same faces are held out on every
    machine and every rerun, and training never sees them."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 10_000 < share * 10_000


def reference_embedding(photo: str | Path) -> np.ndarray:
    from .detect import FaceAnalyzer

    face = FaceAnalyzer(min_score=0.5).largest_face(media.read_image(photo))
    if face is None:
        raise FacepipeError(f"filter: reference photo {photo} shows no face; give a clear photo of this person")
    return np.asarray(face["embedding"])


def drop_reason(face: dict, settings: dict, reference: np.ndarray | None) -> str | None:
    x0, y0, x1, y1 = face["box"]
    if face["score"] < settings["min_score"]:
        return "score"
    if min(x1 - x0, y1 - y0) < settings["min_size"]:
        return "size"
    if face["sharpness"] < settings["min_sharpness"]:
        return "blur"
    if reference is not None and np.linalg.norm(np.asarray(face["embedding"]) - reference) > settings["max_distance"]:
        return "identity"
    return None


def run(person: str, faces_dirs: list[str | Path], out_dir: str | Path, report_path: str | Path,
        settings: dict, reference: str | None = None, sheet_path: str | Path | None = None) -> dict:
    ref = reference_embedding(reference) if reference else None
    dropped = {reason: 0 for reason in REASONS}
    per_source, kept = {}, []
    samples: dict[str, list[Path]] = {"kept": [], **{reason: [] for reason in REASONS}}
    with atomic_dir(out_dir) as tmp:
        (tmp / "faces").mkdir()
        for faces_dir in map(Path, faces_dirs):
            alignments = json.loads((faces_dir / "alignments.json").read_text())
            stats = {"source": alignments["source"], "frames": alignments["frame_count"],
                     "faces": len(alignments["faces"]), "kept": 0}
            per_source[faces_dir.name] = stats
            for face in alignments["faces"]:
                reason = drop_reason(face, settings, ref)
                samples[reason or "kept"].append(faces_dir / face["crop"])
                if reason:
                    dropped[reason] += 1
                    continue
                name = f"faces/{faces_dir.name}_{face['frame']:06d}_{face['face']}.jpg"
                shutil.copyfile(faces_dir / face["crop"], tmp / name)
                kept.append({"file": name, "clip": faces_dir.name, "frame": face["frame"], "face": face["face"],
                             "split": "holdout" if is_holdout(name, settings["holdout"]) else "train",
                             "embedding": face["embedding"]})
                stats["kept"] += 1
        if not kept:
            found = "; ".join(f"{s['source']}: {s['faces']} faces in {s['frames']} frames" for s in per_source.values())
            lost = ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none"
            raise FacepipeError(f"filter: person {person!r} has no usable faces ({found}; dropped: {lost}); "
                                "use sources that show this person's face or relax the filter section of params.yaml")
        if len(kept) > 1 and all(f["split"] == "holdout" for f in kept):
            kept[0]["split"] = "train"
        (tmp / "faces.json").write_text(json.dumps({"person": person, "faces": kept}, indent=1) + "\n")
    report = {"person": person, "reference": reference, "found": sum(s["faces"] for s in per_source.values()),
              "kept": len(kept), "held_out": sum(f["split"] == "holdout" for f in kept), "dropped": dropped, "sources": per_source}
    write_json(report_path, report)
    if sheet_path:
        rows = [(f"{person}: kept", samples["kept"])] + [(f"dropped: {r}", samples[r]) for r in REASONS]
        with atomic_path(sheet_path) as tmp:
            media.write_image(tmp, figures.contact_sheet(
                [(title, [media.read_image(p) for p in paths[:24]]) for title, paths in rows]), quality=90)
    return report
