"""Who is who: dlib identity embeddings of faces sampled along each track, matched to a
reference photo or clustered, and spread back to every face of the track.

A track is one face followed through one shot, so its faces are nearly always one
person; embedding every face would cost 55 ms each on this CPU for little gain.
Instead a track is sampled every `interval` seconds (and at its last face), each sample
is judged together with its neighbours on the track (a median of three, so one bad
embedding of a blurred or turned face cannot flip a decision), and every face takes the
judgement of the sample nearest to it in time. A tracker that wrongly joined two people
is thereby corrected at the next sample."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import align, faces, media
from .errors import FacepipeError
from .formats.alignments import open_crops, read_crop

# Samples embedded per task in the worker processes.
BATCH = 16


def sample(face_list: list[dict], fps: float | None, interval: float) -> list[int]:
    """Indices of the faces to embed: per track, one every `interval` seconds and the
    last; every face of a photo set."""
    by_track: dict[int, list[int]] = {}
    for i, face in enumerate(face_list):
        by_track.setdefault(face["track"], []).append(i)
    chosen = []
    for members in by_track.values():
        members.sort(key=lambda i: face_list[i]["frame"])
        if not fps:
            chosen += members
            continue
        last = None
        for i in members:
            if last is None or face_list[i]["frame"] - face_list[last]["frame"] >= interval * fps:
                chosen.append(i)
                last = i
        if members[-1] != last:
            chosen.append(members[-1])
    return sorted(chosen)


def crop_points(face: dict) -> np.ndarray:
    """The face's landmarks in its aligned crop."""
    return align.transform_points(face["landmarks"], face["matrix"])


@functools.cache
def _embedder() -> faces.Embedder:
    return faces.Embedder()


def _embed_batch(batch: tuple[str, list[tuple[str, np.ndarray]]]) -> np.ndarray:
    faces_dir, jobs = batch
    with open_crops(faces_dir) as crops:
        return np.stack([_embedder()(read_crop(crops, name), points) for name, points in jobs])


def embed(faces_dir: str | Path, face_list: list[dict], workers: int = 2) -> np.ndarray:
    """Embeddings (n, 128) of the given faces of one detect output, from their crops,
    in `workers` processes (dlib holds Python's lock, so threads would not help)."""
    if not face_list:
        return np.zeros((0, 128), np.float32)
    open_crops(faces_dir).close()  # a missing archive is one clear error here, not one per worker
    jobs = [(face["crop"], crop_points(face)) for face in face_list]
    batches = [(str(faces_dir), jobs[i:i + BATCH]) for i in range(0, len(jobs), BATCH)]
    progress = tqdm(total=len(jobs), desc=f"identity {Path(faces_dir).name}", unit="face")
    results = []
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(batches) > 1:
            pool = stack.enter_context(multiprocessing.get_context("forkserver").Pool(min(workers, len(batches))))
            embedded = pool.imap(_embed_batch, batches)
        else:
            embedded = map(_embed_batch, batches)
        for result in embedded:
            results.append(result)
            progress.update(len(result))
    progress.close()
    return np.concatenate(results)


def embed_samples(faces_dir: str | Path, face_list: list[dict], fps: float | None, interval: float,
                  workers: int = 2) -> tuple[list[int], np.ndarray]:
    """The faces of one detect output chosen by `sample`, and their embeddings."""
    samples = sample(face_list, fps, interval)
    return samples, embed(faces_dir, [face_list[i] for i in samples], workers)


def reference_embedding(photo: str | Path) -> np.ndarray:
    """The embedding of the largest face in a photo."""
    image = media.read_image(photo)
    face = faces.largest_face(image)
    if face is None:
        raise FacepipeError(f"reference photo {photo} shows no face; give a clear, front-facing photo of this person")
    return _embedder()(image, face.landmarks)


def neighbourhood(face_list: list[dict], samples: list[int]) -> dict[int, list[int]]:
    """For each sample: three consecutive samples of its track around it (itself and
    its two neighbours; the first or last three at the ends of the track)."""
    by_track: dict[int, list[int]] = {}
    for position, i in enumerate(samples):
        by_track.setdefault(face_list[i]["track"], []).append(position)
    around = {}
    for positions in by_track.values():
        positions.sort(key=lambda p: face_list[samples[p]]["frame"])
        for k, p in enumerate(positions):
            start = max(0, min(k - 1, len(positions) - 3))
            around[p] = positions[start:start + 3]
    return around


def spread(face_list: list[dict], samples: list[int], values: list) -> list:
    """Give every face the value of the sample nearest in time on its track (None for
    faces of tracks without samples)."""
    by_track: dict[int, list[tuple[int, object]]] = {}
    for i, value in zip(samples, values):
        by_track.setdefault(face_list[i]["track"], []).append((face_list[i]["frame"], value))
    result = []
    for face in face_list:
        marks = by_track.get(face["track"])
        result.append(min(marks, key=lambda m: (abs(m[0] - face["frame"]), m[0]))[1] if marks else None)
    return result


def distances_to(face_list: list[dict], samples: list[int], embeddings: np.ndarray,
                 reference: np.ndarray) -> list[float | None]:
    """Per face: distance to `reference`, as the median over its nearest sample and
    that sample's neighbours on the track."""
    raw = np.linalg.norm(embeddings - reference, axis=1)
    around = neighbourhood(face_list, samples)
    judged = [float(np.median(raw[around[p]])) for p in range(len(samples))]
    return spread(face_list, samples, judged)


def cluster(embeddings: np.ndarray, max_distance: float) -> np.ndarray:
    """Cluster labels (average linkage: a cluster's members are on average within
    `max_distance` of each other)."""
    if len(embeddings) == 1:
        return np.zeros(1, int)
    from scipy.cluster.hierarchy import fcluster, linkage

    return fcluster(linkage(embeddings, "average"), t=max_distance, criterion="distance") - 1


def clusters_of(face_list: list[dict], samples: list[int], embeddings: np.ndarray,
                max_distance: float) -> list[int | None]:
    """Per face: its person cluster, by a majority of its nearest sample and that
    sample's neighbours on the track."""
    labels = cluster(embeddings, max_distance)
    around = neighbourhood(face_list, samples)
    judged = []
    for p in range(len(samples)):
        votes = np.bincount(labels[around[p]])
        judged.append(int(labels[p]) if votes[labels[p]] == votes.max() else int(votes.argmax()))
    return spread(face_list, samples, judged)
