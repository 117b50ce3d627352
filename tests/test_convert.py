"""convert's compositing on real footage: masks and colour methods change the face and
nothing else, and colour matching brings the new face to the original's colour."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT
from facepipe import media
from facepipe.compositing import composite
from facepipe.formats import model_folder
from facepipe.input_pipeline import center_faces
from facepipe.settings import section
from facepipe.swapper import Swapper

# Every mask and colour method params.yaml accepts (its schema) is tested.
CHOICES = yaml.safe_load((ROOT / "src/facepipe/schemas/params.schema.yaml").read_text())["properties"]["convert"][
    "properties"]
FRAMES = 8


@pytest.fixture(scope="module")
def swapped_faces(built):
    """The first frames of the built swap clip, their faces and the model's new faces."""
    alignments = json.loads((built / "results/faces/swaps/wa_as_wb/alignments.json").read_text())
    faces = [next(f for f in alignments["faces"] if f["frame"] == i) for i in range(FRAMES)]
    frames = [media.read_image(built / f"results/frames/swaps/wa_as_wb/frame_{i:06d}.jpg") for i in range(FRAMES)]
    model, info = model_folder.load(built / "results/models/wa_wb", "convert")
    crop_size = alignments["crop_size"]
    crops = np.stack([cv2.warpAffine(frame, np.asarray(face["matrix"]), (crop_size, crop_size),
                                     borderMode=cv2.BORDER_REPLICATE) for frame, face in zip(frames, faces)])
    new = Swapper(model, "b", 8)(center_faces(crops, info["model"]["resolution"], info["coverage"]))
    return frames, faces, new, crop_size, info["coverage"]


def render(swapped_faces, **changes) -> list[np.ndarray]:
    frames, faces, new, crop_size, coverage = swapped_faces
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings = section({"convert": {**params["convert"], **changes}}, "convert")
    out = []
    for frame, face, drawn in zip(frames, faces, new):
        frame = frame.copy()
        composite(frame, face, drawn, crop_size, coverage, settings)
        out.append(frame)
    return out


def face_region(face: dict, shape, forehead: bool) -> np.ndarray:
    """The face's box grown by a quarter each way (and by half its height more upwards
    when the mask reaches the forehead)."""
    x0, y0, x1, y1 = face["box"]
    dx, dy = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
    top = y0 - dy - (0.5 * (y1 - y0) if forehead else 0)
    region = np.zeros(shape[:2], bool)
    region[max(0, int(top)):int(y1 + dy), max(0, int(x0 - dx)):int(x1 + dx)] = True
    return region


def hull_region(face: dict, shape) -> np.ndarray:
    region = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(np.asarray(face["landmarks"]).round().astype(np.int32)), 1)
    return region.astype(bool)


@pytest.mark.parametrize("mask", CHOICES["mask"]["enum"])
@pytest.mark.parametrize("color", CHOICES["color_match"]["enum"])
def test_only_the_face_region_changes(swapped_faces, mask, color):
    frames, faces = swapped_faces[:2]
    for before, after, face in zip(frames, render(swapped_faces, mask=mask, color_match=color), faces):
        outside = ~face_region(face, before.shape, mask == "extended")
        assert outside.sum() > 0.05 * outside.size  # enough background to judge
        diff = before.astype(float) - after.astype(float)
        mse = np.mean(diff[outside] ** 2)
        assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 45, (color, mask, mse)
        assert np.abs(diff[hull_region(face, before.shape)]).mean() > 3  # the face itself was redrawn


@pytest.mark.parametrize("color", ["avg-color", "seamless-clone", "color-transfer", "match-hist"])
def test_colour_matching_brings_the_face_to_the_original_colour(swapped_faces, color):
    frames, faces = swapped_faces[:2]

    def colour_error(rendered):
        return np.mean([np.linalg.norm(after[hull_region(face, before.shape)].mean(0)
                                       - before[hull_region(face, before.shape)].mean(0))
                        for before, after, face in zip(frames, rendered, faces)])

    assert colour_error(render(swapped_faces, color_match=color)) < colour_error(render(swapped_faces, color_match="none"))
