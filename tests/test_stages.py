"""Every stage's library code, in process, on a little real footage: two seconds of
woman_a and of woman_b through download, frames, detect, filter, a few training steps of
the tiny model, convert and evaluate, each called through its `run(...)`; then the
compositing properties on those faces. The fast tier (`make test-fast`)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT, made_once, psnr
from facepipe import convert, detect, download, evaluate, frames, train
from facepipe import filter as face_filter
from facepipe.compositing import composite
from facepipe.formats import model_folder
from facepipe.formats.alignments import read as read_alignments
from facepipe.input_pipeline import center_faces
from facepipe.media import audio_duration, probe, read_frames, read_image
from facepipe.settings import section

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CHOICES = yaml.safe_load((ROOT / "src/facepipe/schemas/params.schema.yaml").read_text())["properties"]["convert"][
    "properties"]
PEOPLE = ("woman_a", "woman_b")
STEPS = 30


def settings(name: str, **changes):
    return dataclasses.replace(section(PARAMS, name), **changes)


@pytest.fixture(scope="session")
def small_build(media, tmp_path_factory, worker_id):
    """The stages one after another, as Snakemake would chain them, on 2 s per person
    (made once, for both test workers): the folder ("root") and what each run returned."""
    def build(root: Path) -> None:
        out = {}
        for person in PEOPLE:
            download.run(location=str(media / f"{person}.mp4"), kind="video", source_id=person,
                         out_dir=root / "download" / person, settings=settings("download"))
            frames.run(download_dir=root / "download" / person, out_dir=root / "frames" / person,
                       settings=settings("frames", fps=10, start=0, duration=2))
            detect.run(frames_dir=root / "frames" / person, out_dir=root / "faces" / person,
                       settings=settings("detect"))
            out[person] = face_filter.run(faces_dirs=[root / "faces" / person], out_dir=root / "datasets" / person,
                                          report_path=root / f"{person}.json", settings=settings("filter", holdout=0.2),
                                          person=person)
        out["train"] = train.run(datasets_a=[root / "datasets/woman_a"], datasets_b=[root / "datasets/woman_b"],
                                 out_dir=root / "model", checkpoint_dir=root / "checkpoints", people=PEOPLE,
                                 settings=settings("train", preset="tiny", steps=STEPS, batch_size=8,
                                                   learning_rate=5e-4, save_every=STEPS, preview_every=STEPS))
        # The swap's clip: every frame of woman_a's first second.
        frames.run(download_dir=root / "download/woman_a", out_dir=root / "frames/swap",
                   settings=settings("frames", fps=None, start=0, duration=1))
        detect.run(frames_dir=root / "frames/swap", out_dir=root / "faces/swap", settings=settings("detect"))
        out["convert"] = convert.run(frames_dir=root / "frames/swap", faces_dir=root / "faces/swap",
                                     model_dir=root / "model", source_dataset=root / "datasets/woman_a",
                                     out=root / "swap.mp4", report_path=root / "swap.json",
                                     settings=settings("convert"), swap_from="woman_a")
        (root / "returned.json").write_text(json.dumps(out))

    root = made_once(tmp_path_factory, worker_id, "stages", build)
    return {"root": root, **json.loads((root / "returned.json").read_text())}


def test_frames_detect_and_filter_give_one_dataset_per_person(small_build):
    root = small_build["root"]
    for person in PEOPLE:
        index = json.loads((root / "frames" / person / "frames.json").read_text())
        assert index["count"] == 20 and index["fps"] == "10/1"
        faces = read_alignments(root / "faces" / person)["faces"]
        assert len({face["frame"] for face in faces}) == 20  # a talking head: a face in every frame
        report = small_build[person]
        assert 10 <= report["kept"] <= 20, report
        dataset = json.loads((root / "datasets" / person / "faces.json").read_text())
        assert {face["split"] for face in dataset["faces"]} == {"train", "holdout"}


def test_training_steps_lower_the_loss_and_write_the_model_folder(small_build):
    root = small_build["root"]
    with open(root / "model/loss.csv") as f:
        rows = [(float(r["loss_a"]), float(r["loss_b"])) for r in csv.DictReader(f)]
    assert len(rows) == STEPS and (np.mean(rows[-5:], axis=0) < np.mean(rows[:5], axis=0)).all(), rows
    info = model_folder.read_info(root / "model")
    assert info["steps"] == STEPS and info["people"] == {"a": "woman_a", "b": "woman_b"}


def test_convert_changes_the_face_and_keeps_the_rest_and_the_audio(small_build, media):
    root = small_build["root"]
    swapped = list(read_frames(probe(root / "swap.mp4")))
    source = list(read_frames(probe(media / "woman_a.mp4"), None, 1.0))
    assert len(swapped) == len(source) == 30 and probe(root / "swap.mp4").has_audio
    assert abs(audio_duration(root / "swap.mp4") - 1.0) < 0.1
    faces = read_alignments(root / "faces/swap")["faces"]
    assert small_build["convert"]["faces_swapped"] == len(faces) == 30
    for i in (0, 29):
        x0, y0, x1, y1 = faces[i]["box"]
        w, h = x1 - x0, y1 - y0
        inner = (slice(int(y0 + h / 4), int(y1 - h / 4)), slice(int(x0 + w / 4), int(x1 - w / 4)))
        outside = np.ones(swapped[i].shape[:2], bool)  # beyond the box dilated by a quarter each way
        outside[max(0, int(y0 - h / 4)):int(y1 + h / 4), max(0, int(x0 - w / 4)):int(x1 + w / 4)] = False
        assert outside.mean() > 0.1
        assert np.abs(swapped[i][inner].astype(float) - source[i][inner]).mean() > 10
        assert psnr(swapped[i][outside], source[i][outside]) > 38


def test_evaluate_scores_the_pair_and_the_swap(small_build):
    root = small_build["root"]
    pair = evaluate.run(model_dir=root / "model", pair=(root / "datasets/woman_a", root / "datasets/woman_b"),
                        out=root / "pair.json", settings=settings("evaluate"))
    assert 0 < pair["a"]["face_mae"] < 0.5 and pair["steps"] == STEPS
    datasets = [root / "datasets" / person for person in PEOPLE]
    swap = evaluate.run(model_dir=root / "model", out=root / "swap_metrics.json", settings=settings("evaluate"),
                        swap=evaluate.SwapInputs(video=root / "swap.mp4", report=root / "swap.json",
                                                 frames_dir=root / "frames/swap", faces_dir=root / "faces/swap",
                                                 source_dataset=datasets[0], target_dataset=datasets[1],
                                                 people=datasets))
    assert swap["frames"] == 30 and swap["background_psnr"] > 38
    assert json.loads((root / "swap_metrics.json").read_text()) == swap


@pytest.fixture(scope="module")
def faces_to_paste(small_build):
    """Frames of the swap clip, their faces and the model's new faces for them."""
    root = small_build["root"]
    alignments = read_alignments(root / "faces/swap")
    index = json.loads((root / "frames/swap/frames.json").read_text())
    picks = [alignments["faces"][i] for i in (0, 15, 29)]
    images = [read_image(root / "frames/swap" / index["files"][face["frame"]]) for face in picks]
    model, info = model_folder.load(root / "model", "convert")
    crops = np.stack([cv2.warpAffine(image, np.asarray(face["matrix"]), (alignments["crop_size"],) * 2,
                                     borderMode=cv2.BORDER_REPLICATE) for image, face in zip(images, picks)])
    new = convert.Swapper(model, "b", 4)(center_faces(crops, info["model"]["resolution"], info["coverage"]))
    return images, picks, new, alignments["crop_size"], info["coverage"]


def paste(faces_to_paste, **changes) -> list[np.ndarray]:
    images, picks, new, crop_size, coverage = faces_to_paste
    out = []
    for image, face, drawn in zip(images, picks, new):
        frame = image.copy()
        composite(frame, face, drawn, crop_size, coverage, settings("convert", **changes))
        out.append(frame)
    return out


def test_face_scale_grows_the_pasted_region_by_its_factor(faces_to_paste):
    images, picks = faces_to_paste[:2]
    for grown, plain, image, face in zip(paste(faces_to_paste, face_scale=1.1), paste(faces_to_paste), images, picks):
        changed = [np.any(out != image, axis=2) for out in (grown, plain)]
        assert np.sqrt(changed[0].sum() / changed[1].sum()) == pytest.approx(1.1, abs=0.03)
        x0, y0, x1, y1 = face["box"]
        w, h = x1 - x0, y1 - y0
        near = np.zeros(image.shape[:2], bool)  # and nothing changes away from the face
        near[max(0, int(y0 - h / 2)):int(y1 + h / 2), max(0, int(x0 - w / 2)):int(x1 + w / 2)] = True
        assert not changed[0][~near].any()


@pytest.mark.parametrize("method", [m for m in CHOICES["sharpen"]["enum"] if m != "none"])
def test_every_sharpen_method_adds_detail_inside_the_face(faces_to_paste, method):
    images, picks = faces_to_paste[:2]

    def detail(frame, face):
        hull = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.asarray(face["landmarks"][27:]).round().astype(np.int32)), 1)
        return cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_64F)[hull.astype(bool)].var()

    sharp = paste(faces_to_paste, sharpen=method, sharpen_amount=1.5)
    for face, plain, sharpened in zip(picks, paste(faces_to_paste), sharp):
        assert detail(sharpened, face) > 1.05 * detail(plain, face), method
