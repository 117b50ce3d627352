"""Media people really have (the fault campaign's media part, benchmarks/fault_media.py):
each either works correctly or is refused in one line naming the file and what to do."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from conftest import BIN, ROOT, run
from facepipe import faces
from facepipe.errors import FacepipeError
from facepipe.media import FFMPEG, probe, read_frames


def ffmpeg(*args) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-y", "-loglevel", "error", *map(str, args)], check=True)


def refusal(path) -> str:
    with pytest.raises(FacepipeError) as error:
        probe(path)
    return str(error.value)


def test_a_variable_rate_video_is_read_on_its_constant_rate_timeline(media, tmp_path):
    """Found by the campaign: a phone's variable-rate video (here 30 fps, then 15, then
    30 again) was read at its time base's rate (120 fps: 5 times the frames), while the
    frames stage recorded its average rate, so the swap ran 5 times as long as its sound.
    Now frame i is the picture at i / rate: the flash at 3 s is frame 3 * rate."""
    path = tmp_path / "vfr.mp4"
    select = "if(lt(t,1),not(mod(n,4)),if(lt(t,2),not(mod(n,8)),not(mod(n,4))))"
    ffmpeg("-i", media / "woman_a.mp4", "-t", 4, "-vf",
           f"fps=120,scale=128:128,drawbox=c=white:t=fill:enable='between(t,3,3.1)',select='{select}'",
           "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-an", path)
    info = probe(path)
    assert 20 < info.fps <= 30  # a constant rate between its stretches' average and its nominal 30
    frames = list(read_frames(info))
    assert abs(len(frames) - 4 * info.fps) <= 1
    flash = next(i for i, frame in enumerate(frames) if frame.mean() > 200)
    assert abs(flash / info.fps - 3) <= 1 / info.fps
    # A stretch of the clip: the same frames as the whole clip's, from the same time on.
    assert len(list(read_frames(info, 2.0, 1.0))) == round(float(info.fps))


def test_a_constant_rate_video_with_a_short_last_frame_is_read_at_its_nominal_rate(tmp_path):
    """Found by the campaign: 90 frames at 30 fps whose last one lasts 1/120 s average
    30.25 fps, which the swap had for its rate (frames resampled to an odd rate)."""
    path = tmp_path / "short_last.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x64:r=120:d=3", "-vf", "select='not(mod(n,4))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", path)
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    assert "30.25 fps, 30 tbr" in text
    info = probe(path)
    assert info.fps == 30 and abs(len(list(read_frames(info))) - 90) <= 1  # the last frame may round away


def test_a_1x1_video_is_read_and_refused_in_one_line(media, tmp_path):
    """Found by the campaign: the size pattern wanted 2-5 digits, so a 1x1 video was
    'not a readable video (At least one output file must be specified)'."""
    tiny = tmp_path / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=1x1:r=30:d=1", "-c:v", "libx264", "-pix_fmt", "yuv444p", tiny)
    info = probe(tiny)
    assert (info.width, info.height) == (1, 1) and len(list(read_frames(info))) == 30
    out = tmp_path / "download"
    proc = run([str(BIN / "facepipe"), "download", "--params", str(ROOT / "params.yaml"), "--source", str(tiny),
                "--kind", "video", "--id", "tiny", "--out", str(out)], tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"facepipe download: error: download: {tiny}: the picture is only 1x1 px, too small to show a face (faces are "
        "found from 16 px); give the video at its full size"]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["tiny.mp4"]


def test_sound_only_files_are_refused_as_such(tmp_path):
    """Found by the campaign: an .m4a was 'not a readable video (At least one output file
    must be specified)', and an .mp3 with cover art was read as a one-frame video at 90000
    fps, refused only after detect as having no faces in the swap's range."""
    song, cover, art = tmp_path / "song.m4a", tmp_path / "cover.png", tmp_path / "podcast.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=1", "-c:a", "aac", song)
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:d=1", "-frames:v", 1, cover)
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=1", "-i", cover, "-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame",
           "-c:v", "png", "-disposition:v", "attached_pic", art)
    assert refusal(song) == f"{song}: sound only, no picture (an audio file); give a video file such as mp4"
    assert refusal(art) == f"{art}: sound only, no picture (an audio file with cover art); give a video file such as mp4"


def test_empty_cut_short_and_random_files_say_what_is_wrong(media, tmp_path):
    """Found by the campaign: all three were 'not a readable video (Error opening input
    files: Invalid data found when processing input)'."""
    empty, whole, cut, noise = (tmp_path / name for name in ("empty.mp4", "whole.mp4", "cut.mp4", "noise.mp4"))
    empty.write_bytes(b"")
    ffmpeg("-i", media / "woman_a.mp4", "-t", 1, "-c", "copy", whole)  # its index (moov) at the end, as usual
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 65536, np.uint8).tobytes())
    assert refusal(empty) == f"{empty}: empty file (0 bytes), as a failed copy or download leaves; copy or download " \
                             "it again"
    assert refusal(cut) == f"{cut}: incomplete video (its index, the moov atom, is missing), as a download or " \
                           "recording cut short leaves it; download or copy it again, or record it to the end"
    assert refusal(noise) == f"{noise}: not a readable video: ffmpeg recognises no format in it; give a video file " \
                             "such as mp4"


def test_a_close_up_in_an_8k_frame_is_found_whole(media):
    """Found by the campaign: RetinaFace ran on an 8K frame at full size (7 GB, 4 s a
    frame) and, its anchors being at most 512 px, boxed a part of a 2700 px face, whose
    swap then failed the identity check. Now it sees at most 2160 px on the short side,
    and a large frame also small, for large faces."""
    frame = next(read_frames(probe(media / "woman_a.mp4")))
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    expected = faces.Detector(0.9)(bgr)[0][0] * (3456 / 512) + [2112, 432, 2112, 432]
    canvas = np.full((4320, 7680, 3), 90, np.uint8)
    canvas[432:3888, 2112:5568] = cv2.resize(bgr, (3456, 3456), interpolation=cv2.INTER_LINEAR)
    detector = faces.Detector(0.9)
    seen = []
    session_run = detector.session.run
    detector.session = type("Recording", (), {"run": lambda self, names, feed: (
        seen.append(feed["input"].shape), session_run(names, feed))[1]})()
    found = detector(canvas)
    assert max(min(shape[2:]) for shape in seen) <= 2160
    box = found[0][0]
    overlap = np.prod(np.clip(np.minimum(box[2:], expected[2:]) - np.maximum(box[:2], expected[:2]), 0, None))
    union = np.prod(box[2:] - box[:2]) + np.prod(expected[2:] - expected[:2]) - overlap
    assert overlap / union > 0.8, (box, expected)
