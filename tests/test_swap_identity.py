"""In a video of several people, only the source person's face is swapped (a real build)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import make_project, psnr, run, snakemake
from facepipe.media import probe, read_frames

START, DURATION = 6.5, 3.0  # two_faces_360p.mp4: the singer's close-up, then the audience


@pytest.fixture(scope="module")
def stage_build(media, tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    frame = next(read_frames(probe(media / "two_faces_360p.mp4"), 200 / 29.97, 0.04))
    reference = root / "singer.jpg"
    cv2.imwrite(str(reference), cv2.cvtColor(frame[20:260, 150:360], cv2.COLOR_RGB2BGR))
    config = {
        "people": {"singer": {"sources": ["media/two_faces_360p.mp4"], "reference": str(reference)},
                   "woman_a": {"sources": ["media/woman_a.mp4"]}},
        "pairs": {"singer_wa": {"a": "singer", "b": "woman_a"}},
        "swaps": {"singer_as_wa": {"pair": "singer_wa", "video": "media/two_faces_360p.mp4", "from": "singer",
                                   "start": START, "duration": DURATION}},
    }
    project = make_project(root / "project", config, {"frames": {"fps": 5, "duration": 10},
                                                        "train": {"steps": 40, "save_every": 20,
                                                                  "preview_every": 20}})
    run(["git", "init", "-q"], project)
    snakemake(project, "results/swaps/singer_as_wa.mp4", "results/metrics/swaps/singer_as_wa.json")
    return project


def test_only_the_source_persons_face_is_swapped(stage_build, media):
    report = json.loads((stage_build / "results/swaps/singer_as_wa.json").read_text())
    alignments = json.loads((stage_build / "results/faces/swaps/singer_as_wa/alignments.json").read_text())
    assert report["faces_left"] > 100  # the audience
    singer = [f for f in alignments["faces"] if f["track"] in report["swapped_tracks"]]
    others = [f for f in alignments["faces"] if f["track"] not in report["swapped_tracks"]]
    assert len(report["swapped_tracks"]) == 1 and report["faces_swapped"] == len(singer) >= 30
    assert max(f["frame"] for f in singer) < min(f["frame"] for f in others)  # the close-up comes first

    source = list(read_frames(probe(media / "two_faces_360p.mp4"), START, DURATION))
    output = list(read_frames(probe(stage_build / "results/swaps/singer_as_wa.mp4")))
    assert len(source) == len(output) == alignments["frame_count"]
    changed = [np.abs(source[f["frame"]].astype(float) - output[f["frame"]].astype(float))[
        int(f["box"][1]):int(f["box"][3]), int(f["box"][0]):int(f["box"][2])].mean() for f in singer]
    assert np.mean(changed) > 8, "the singer's face was not swapped"
    before, after, each = [], [], []
    for face in others:  # changed by re-encoding alone
        x0, y0, x1, y1 = (int(v) for v in face["box"])
        region = (slice(y0, y1), slice(x0, x1))
        before.append(source[face["frame"]][region].ravel())
        after.append(output[face["frame"]][region].ravel())
        each.append(psnr(before[-1], after[-1]))
    # Over all their pixels (measured 41.0 dB at the default crf 16, veryfast); no single face
    # much worse (39.4 dB at the least): what a swap leaking onto them would break.
    assert psnr(np.concatenate(before), np.concatenate(after)) >= 40 and min(each) >= 38, min(each)

    metrics = json.loads((stage_build / "results/metrics/swaps/singer_as_wa.json").read_text())
    assert metrics["faces_scored"] <= len(singer)  # only the swapped faces are scored
    assert metrics["background_psnr"] > 38  # the audience counts as background, and is untouched
