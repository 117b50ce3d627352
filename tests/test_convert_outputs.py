"""convert's output options, each through the real `facepipe convert` (decode, model,
compositing, ffmpeg encode) on the built woman_a -> woman_b swap, and photo swaps
through Snakemake."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import yaml

from conftest import BIN, copy_project, psnr, rules_run, run, snakemake
from facepipe.convert import range_keyframes
from facepipe.media import FFMPEG, VideoWriter, audio_duration, probe, read_frames, read_image
from facepipe.tagging import gif_blocks

SWAP = "results/{}/swaps/wa_as_wb"


def convert(built, tmp_path, out_name: str, check: bool = True, frames: str = SWAP.format("frames"),
            faces: str = SWAP.format("faces"), **changes) -> tuple[subprocess.CompletedProcess, dict]:
    """`facepipe convert` of the built swap with params.yaml's convert section changed."""
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["convert"].update(changes)
    params_file = tmp_path / f"{out_name}.params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    out, report = tmp_path / out_name, tmp_path / f"{out_name}.json"
    proc = run([str(BIN / "facepipe"), "convert", "--params", str(params_file), "--frames", frames,
                "--faces", faces, "--model", "results/models/wa_wb", "--from", "woman_a",
                "--source-dataset", "results/datasets/woman_a", "--out", str(out), "--report", str(report)],
               built, check=check)
    return proc, json.loads(report.read_text()) if report.exists() else {}


def clip_frames(built) -> list[np.ndarray]:
    index = json.loads((built / SWAP.format("frames") / "frames.json").read_text())
    return list(read_frames(probe(built / index["video"]), index["start"] or None, index["duration"]))


def test_frames_outside_the_ranges_pass_through(built, tmp_path):
    """Only frames 10-20 and 40-45 are swapped. Every other frame matches the untouched
    clip encoded with the same settings (and keyframes at the range edges): those after
    a range bit for bit, those before one to x264's look-ahead, which spends bits
    knowing the frames to come (measured 47.6-63.5 dB)."""
    ranges = [[10, 20], [40, 45]]
    _, report = convert(built, tmp_path, "ranges.mp4", frame_ranges=ranges)
    source = clip_frames(built)
    settings = yaml.safe_load((built / "params.yaml").read_text())["convert"]
    info = probe(tmp_path / "ranges.mp4")
    with VideoWriter(tmp_path / "untouched.mp4", info.width, info.height, info.fps, crf=settings["crf"],
                     preset=settings["preset"], keyframes=range_keyframes(ranges, len(source))) as writer:
        for frame in source:
            writer.write(frame)
    swapped = list(read_frames(info))
    reference = list(read_frames(probe(tmp_path / "untouched.mp4")))
    assert len(swapped) == len(reference) == len(source) == 60 and report["faces_swapped"] == 17
    inside = {i for first, last in ranges for i in range(first, last + 1)}
    for i in range(60):
        if i in inside:
            assert psnr(swapped[i], reference[i]) < 35, i  # the face was redrawn
        else:
            assert psnr(swapped[i], reference[i]) >= 45, i
    for i in [*range(21, 30), *range(46, 60)]:
        assert np.array_equal(swapped[i], reference[i]), i


def test_side_by_side_is_twice_as_wide_with_the_original_on_the_left(built, tmp_path):
    convert(built, tmp_path, "sbs.mp4", side_by_side=True)
    info = probe(tmp_path / "sbs.mp4")
    assert (info.width, info.height) == (2 * 512, 512)
    output, source = list(read_frames(info)), clip_frames(built)
    assert len(output) == len(source)
    below_captions = slice(60, None)
    for i in (0, 30, 59):
        assert psnr(output[i][below_captions, :512], source[i][below_captions]) > 38  # original
        assert psnr(output[i][below_captions, 512:], source[i][below_captions]) < 35  # swapped
    captions = output[0][:40]
    assert (captions > 240).mean() > 0.01 and (captions < 15).mean() > 0.01  # white text, black outline


def test_gif_output_opens_with_every_frame_and_the_synthetic_tag(built, tmp_path):
    proc, _ = convert(built, tmp_path, "swap.mp4", check=False, format="gif")
    assert proc.returncode == 1 and "swap.mp4 is not a .gif file, which params.yaml's convert.format" in proc.stderr
    _, report = convert(built, tmp_path, "swap.gif", format="gif", output_scale=0.5)
    data = (tmp_path / "swap.gif").read_bytes()
    assert data[:6] == b"GIF89a"
    frames, comments = gif_blocks(data)
    assert frames == 60 and "Synthetic media" in comments[0]
    info = probe(tmp_path / "swap.gif")  # ffmpeg reads it back
    assert (info.width, info.height) == (256, 256) and not info.has_audio
    assert len(list(read_frames(info))) == 60
    assert abs(info.duration - 2.0) < 0.05 and report["size"] == [256, 256]


def test_h265_with_audio(built, tmp_path):
    convert(built, tmp_path, "h265.mp4", codec="h265", crf=24)
    info = probe(tmp_path / "h265.mp4")
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(tmp_path / "h265.mp4")], capture_output=True,
                          text=True).stderr
    assert "Video: hevc" in text and info.has_audio and info.tags["synthetic_media"] == "true"
    assert len(list(read_frames(info))) == 60
    assert abs(audio_duration(tmp_path / "h265.mp4") - 2.0) < 0.1


def test_a_source_without_audio_gives_a_clean_video_without_audio(built, media, tmp_path):
    """man_greenscreen_noaudio.mp4 through frames, detect and convert (every face swapped)."""
    facepipe = [str(BIN / "facepipe")]
    params = str(built / "params.yaml")
    run(facepipe + ["download", "--params", params, "--source", str(media / "man_greenscreen_noaudio.mp4"),
                    "--kind", "video", "--id", "noaudio", "--out", str(tmp_path / "download")], built)
    run(facepipe + ["frames", "--params", params, "--download", str(tmp_path / "download"), "--out",
                    str(tmp_path / "frames"), "--native-fps", "--duration", "2"], built)
    run(facepipe + ["detect", "--params", params, "--frames", str(tmp_path / "frames"), "--out",
                    str(tmp_path / "faces")], built)
    proc, report = convert(built, tmp_path, "noaudio.mp4", frames=str(tmp_path / "frames"),
                           faces=str(tmp_path / "faces"), max_distance=None)
    assert "error" not in proc.stderr.lower()
    info = probe(tmp_path / "noaudio.mp4")
    source = probe(media / "man_greenscreen_noaudio.mp4")
    assert not source.has_audio and not info.has_audio and audio_duration(tmp_path / "noaudio.mp4") is None
    assert info.fps == source.fps and report["faces_swapped"] > 0
    assert len(list(read_frames(info))) == round(2 * float(source.fps))


def test_photos_in_photos_out(built, tmp_path):
    """A folder of photos as a swap's source: Snakemake renders a folder of swapped
    photos under the same names, each tagged and at its own size, and reruns nothing
    else. (Found by the fault campaign: an odd-sized photo came out a pixel smaller or
    larger, rounded to the even sizes only a video needs.)"""
    from PIL import Image

    project = copy_project(built, tmp_path / "p")
    photos = tmp_path / "photos"
    photos.mkdir()
    source = clip_frames(built)
    stills = {0: "still_0.jpg", 20: "still_20.png", 40: "still_40.webp", 55: "still_55.bmp"}
    sizes = {20: (511, 509), 55: (507, 511)}  # mixed sizes, odd ones too (width, height)
    for i, name in stills.items():
        width, height = sizes.get(i, (512, 512))
        cv2.imwrite(str(photos / name), cv2.cvtColor(source[i][:height, :width], cv2.COLOR_RGB2BGR))
    config = yaml.safe_load((project / "config/config.yaml").read_text())
    config["swaps"]["stills"] = {"pair": "wa_wb", "video": str(photos), "from": "woman_a"}
    (project / "config/config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(project, "--printshellcmds")
    ran = rules_run(proc)
    assert ran == {"download", "frames", "detect", "convert_photos", "all"}, ran
    out = project / "results/swaps/stills"
    # BMP cannot carry the tag, so that photo comes out as PNG under its own stem.
    outputs = {0: "still_0.jpg", 20: "still_20.png", 40: "still_40.webp", 55: "still_55.png"}
    assert sorted(p.name for p in out.glob("[!.]*")) == sorted(outputs.values())
    for i, name in outputs.items():
        with Image.open(out / name) as image:  # read back by another library than ours
            image.load()
            tag = image.info.get("comment") or image.info.get("Comment") or image.info.get("xmp")
        assert "Synthetic media" in (tag.decode() if isinstance(tag, bytes) else tag), (name, image.info)
        swapped = read_image(out / name)
        original = read_image(photos / stills[i])
        assert swapped.shape == original.shape and psnr(swapped, original) < 35
    # Drawn on the photos themselves: a lossless one keeps every pixel outside the face.
    faces = json.loads((project / "results/faces/swaps/stills/alignments.json").read_text())["faces"]
    order = json.loads((project / "results/frames/swaps/stills/frames.json").read_text())["photos"]
    for name, written in (("still_20.png", "still_20.png"), ("still_55.bmp", "still_55.png")):
        x0, y0, x1, y1 = next(f["box"] for f in faces if f["frame"] == order.index(name))
        w, h = x1 - x0, y1 - y0
        original, swapped = read_image(photos / name), read_image(out / written)
        outside = np.ones(original.shape[:2], bool)  # beyond the face box dilated by a quarter each way
        outside[max(0, int(y0 - h / 4)):int(y1 + h / 4), max(0, int(x0 - w / 4)):int(x1 + w / 4)] = False
        assert outside.mean() > 0.1 and np.array_equal(swapped[outside], original[outside]), name
        assert not np.array_equal(swapped, original)
    report = json.loads((project / "results/swaps/stills.json").read_text())
    assert report["faces_swapped"] == 4


def test_convert_batch_size_changes_speed_not_the_video(built, tmp_path):
    """convert.batch_size is a speed setting (a change to it reruns nothing), so the
    model must give each face the same pixels whatever faces share its batch."""
    convert(built, tmp_path, "batch5.mp4", batch_size=5)
    assert (tmp_path / "batch5.mp4").read_bytes() == (built / "results/swaps/wa_as_wb.mp4").read_bytes()
