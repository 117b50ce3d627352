"""evaluate: the metrics mean something on real footage."""

from __future__ import annotations

import json
import subprocess

from facepipe.evaluate import evaluate_swap
from facepipe.media import FFMPEG

SETTINGS = {"dilate": 0.25}


def swap_inputs(built, monkeypatch):
    monkeypatch.chdir(built)  # stage paths are relative to the project, as when Snakemake runs them
    return dict(frames_dir=built / "results/frames/swaps/wa_as_wb", faces_dir=built / "results/faces/swaps/wa_as_wb",
                source_dataset=built / "results/datasets/woman_a", target_dataset=built / "results/datasets/woman_b",
                settings=SETTINGS)


def test_untouched_input_transfers_no_identity(built, media, monkeypatch):
    result, _ = evaluate_swap(media / "woman_a.mp4", **swap_inputs(built, monkeypatch))
    assert result["frames_scored"] >= 55
    assert result["identity_transfer_rate"] <= 0.05
    assert result["mean_distance_to_source"] < result["mean_distance_to_target"]
    assert result["background_psnr"] > 40 and 0.9 < result["flicker_ratio"] < 1.1


def test_the_target_persons_own_face_counts_as_transferred(built, media, monkeypatch):
    result, _ = evaluate_swap(media / "woman_b.mp4", **swap_inputs(built, monkeypatch))
    assert result["faces_scored"] >= 55
    assert result["identity_transfer_rate"] >= 0.95
    assert result["mean_distance_to_target"] < result["mean_distance_to_source"]


def test_output_without_faces_scores_zero_and_says_so(built, tmp_path, capsys, monkeypatch):
    blank = tmp_path / "blank.mp4"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=512x512:rate=30", "-t", "2",
                    "-pix_fmt", "yuv420p", str(blank)], check=True)
    result, _ = evaluate_swap(blank, **swap_inputs(built, monkeypatch))
    assert result["frames_scored"] == result["faces_scored"] == 0 and result["identity_transfer_rate"] is None
    assert "0 frames scored" in capsys.readouterr().out


def test_build_writes_pair_and_swap_metrics(built):
    pair = json.loads((built / "results/metrics/pairs/wa_wb.json").read_text())
    for side in ("a", "b"):
        assert pair[side]["held_out_faces"] >= 1
        assert 0 < pair[side]["ssim"] <= 1
        assert pair[side]["mae"] < pair[side]["untrained_mae"]
    swap = json.loads((built / "results/metrics/swaps/wa_as_wb.json").read_text())
    assert set(swap) >= {"identity_transfer_rate", "mean_distance_to_source", "mean_distance_to_target",
                         "flicker_ratio", "background_psnr", "faces_scored"}
    assert swap["faces_scored"] > 0 and swap["background_psnr"] > 35


def test_report_has_every_section_and_image(built, tmp_path):
    from conftest import copy_project, run, BIN

    project = copy_project(built, tmp_path / "p")
    run([str(BIN / "snakemake"), "--report", "report.html"], project)
    page = (project / "report.html").read_text()
    for section in ("Pairs", "People", "Evaluation"):
        assert section in page
    for caption in ("Preview grid of pair", "Training loss", "Faces of woman_a", "Faces of woman_b",
                    "identity transfer rate", "Before and after"):
        assert caption in page, caption
    for name in ("preview.png", "loss.png", "woman_a.jpg", "woman_b.jpg", "wa_wb.jpg", "wa_as_wb.jpg",
                 "wa_wb.html", "wa_as_wb.html"):
        assert f'"{name}"' in page, name
    # embedded, not linked: the page works on its own
    assert page.count("data:image/png") >= 2 and page.count("data:image/jpeg") >= 4


def test_only_the_faces_convert_swapped_are_scored(built, tmp_path, monkeypatch):
    """With frame ranges, the faces outside them were left alone: they are background,
    not failed swaps."""
    from test_convert_outputs import convert

    _, report = convert(built, tmp_path, "ranges.mp4", frame_ranges=[[10, 20], [40, 45]])
    assert list(report["swapped_runs"].values()) == [[[10, 20], [40, 45]]]  # woman_a: one track
    everything, _ = evaluate_swap(tmp_path / "ranges.mp4", **swap_inputs(built, monkeypatch))
    result, _ = evaluate_swap(tmp_path / "ranges.mp4", **swap_inputs(built, monkeypatch),
                              swapped_runs=report["swapped_runs"])
    assert everything["faces_scored"] >= 55 and 10 <= result["faces_scored"] <= 17
    assert result["frames_scored"] == result["faces_scored"]
