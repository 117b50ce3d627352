"""facepipe live on real footage played as a live source, with the built pair's model:
what comes out (a file, a UDP stream, the preview page in a real Chromium), swap off,
the synthetic mark, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import BIN, env, psnr, run
from facepipe.live.marks import label_box
from facepipe.media import FFMPEG, audio_duration, probe, read_frames

FACEPIPE = str(BIN / "facepipe")


def live(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([FACEPIPE, "live", "--model", "results/models/wa_wb", "--as", "woman_b", *args], project, check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames_of(path: Path) -> np.ndarray:
    return np.stack(list(read_frames(probe(path))))


def face_regions(shape, boxes) -> tuple[np.ndarray, np.ndarray]:
    """Inside the faces' boxes (where the face is redrawn), and outside them grown by a
    quarter each way (where nothing may change)."""
    inside, near = np.zeros(shape[:2], bool), np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        dx, dy = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
        inside[int(y0):int(y1), int(x0):int(x1)] = True
        near[max(0, int(y0 - dy)):int(y1 + dy), max(0, int(x0 - dx)):int(x1 + dx)] = True
    return inside, ~near


@pytest.fixture(scope="module")
def recorded(built, media, tmp_path_factory):
    """woman_a.mp4's first second, swapped to woman_b (only faces that are woman_a, by
    her dataset's identity) and written to a file; then again with the swap and the
    mark off. Every frame (a file is not played in real time unless asked)."""
    out = tmp_path_factory.mktemp("live")
    live(built, str(media / "woman_a.mp4"), "--duration", "1", "--stream", str(out / "swapped.mp4"))
    live(built, str(media / "woman_a.mp4"), "--duration", "1", "--no-swap", "--no-label",
         "--stream", str(out / "plain.mkv"))
    source = frames_of(media / "woman_a.mp4")[:30]
    return source, frames_of(out / "swapped.mp4"), frames_of(out / "plain.mkv"), out


def test_live_draws_the_face_and_leaves_the_rest(recorded, built):
    source, swapped, _, out = recorded
    info = probe(out / "swapped.mp4")
    assert (info.width, info.height, info.fps, len(swapped)) == (512, 512, 30, 30)
    # The sound starts with the picture and lasts at least as long. (Played as fast as it
    # goes, ffmpeg has taken up to a second more sound than picture when the picture
    # ends: known, see the note.)
    assert info.has_audio and audio_duration(out / "swapped.mp4") >= 0.95
    assert info.tags.get("synthetic_media") == "true"
    alignments = json.loads((built / "results/faces/swaps/wa_as_wb/alignments.json").read_text())
    boxes = {face["frame"]: face["box"] for face in alignments["faces"]}  # the same clip, detected by detect
    x0, y0, x1, y1 = label_box(512, 512)
    changed = []
    for i in range(10, 30):  # the model's first face comes a few frames in
        inside, outside = face_regions(source[i].shape, [boxes[i]])
        outside[y0:y1, x0:x1] = False
        assert outside.sum() > 0.1 * outside.size  # enough background to judge
        assert psnr(swapped[i][outside], source[i][outside]) > 32, i  # the background: only the encoder's loss
        changed.append(np.abs(swapped[i].astype(float) - source[i])[inside].mean())
    assert np.median(changed) > 8, changed


def test_swap_off_and_no_label_give_the_input_back(recorded):
    source, swapped, plain, _ = recorded
    assert len(plain) == 30
    assert min(psnr(p, s) for p, s in zip(plain, source)) > 35
    x0, y0, x1, y1 = label_box(512, 512)
    corner = slice(y0, y1), slice(x0, x1)
    assert psnr(plain[-1][corner], source[-1][corner]) > 35  # no mark
    assert psnr(swapped[-1][corner], source[-1][corner]) < 20  # the mark


def test_udp_stream_is_read_back_with_size_rate_and_sound(built, media, tmp_path):
    port = free_port()
    received = tmp_path / "received.ts"
    reader = subprocess.Popen([FFMPEG, "-nostdin", "-loglevel", "error", "-i",
                               f"udp://127.0.0.1:{port}?timeout=20000000", "-c", "copy", "-t", "2", str(received)])
    try:
        time.sleep(0.5)
        live(built, str(media / "woman_b.mp4"), "--realtime", "--every-face", "--duration", "3",
             "--stream", f"udp://127.0.0.1:{port}")
        assert reader.wait(timeout=30) == 0
    finally:
        reader.kill()
    info = probe(received)
    assert (info.width, info.height, info.fps) == (480, 480, 30)
    assert info.has_audio


def stream_starts(path: Path) -> dict[str, float]:
    """Where each of a file's video and audio streams starts (seconds), as ffmpeg reads it."""
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return {kind: float(m.group(1)) for kind in ("Video", "Audio")
            if (m := re.search(rf"Stream #0:\d+.*: {kind}: .*, start (-?[\d.]+)", text))}


def mono_8k(path: Path) -> np.ndarray:
    pcm = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "8000",
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(pcm, np.int16).astype(np.float64)


def test_sound_stays_with_the_picture_when_the_picture_starts_after_it(built, media, tmp_path):
    """two_faces_360p.mp4's picture starts 0.84 s after its sound: the recording has
    the source's own frames (none made up to fill that gap) and the sound that went
    with each of them, within a frame."""
    clip = media / "two_faces_360p.mp4"
    starts = stream_starts(clip)
    assert starts["Video"] - starts["Audio"] > 0.5  # the case under test
    live(built, str(clip), "--every-face", "--no-swap", "--no-label", "--duration", "4",
         "--stream", str(tmp_path / "out.mkv"))
    recorded = frames_of(tmp_path / "out.mkv")
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(clip), "-map", "0:v:0", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    source = np.frombuffer(raw, np.uint8).reshape(-1, *recorded.shape[1:])  # as decoded, no frames made up
    assert len(recorded) == round(4 * 29.97)
    assert psnr(recorded[60], source[60]) > 35  # frame for frame: no copies at the start
    sound, source_sound = mono_8k(tmp_path / "out.mkv"), mono_8k(clip)
    heard = sound[8000:3 * 8000]  # the recording's seconds 1 to 3
    scores = [heard @ source_sound[k:k + len(heard)] / (np.linalg.norm(source_sound[k:k + len(heard)]) + 1e-9)
              for k in range(0, len(source_sound) - len(heard), 8)]
    found = int(np.argmax(scores)) * 8 / 8000 - 1.0  # where in the source's sound the recording's sound is
    assert abs(found - (starts["Video"] - starts["Audio"])) < 1 / 29.97, found


def chromium() -> str:
    """The distribution's Chromium, installed (as root) when missing."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("chromium")
    if found is None:
        message = "Chromium not found and could not be installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def best_match(picture: np.ndarray, frames: np.ndarray, region: tuple) -> float:
    """PSNR of `picture` inside `region` against the source frame it is closest to."""
    return max(psnr(picture[region], frame[region]) for frame in frames)


def test_preview_page_in_chromium_moves_and_its_switch_turns_the_swap_off(built, media, tmp_path):
    from playwright.sync_api import sync_playwright

    browser_path = chromium()
    port = free_port()
    proc = subprocess.Popen([FACEPIPE, "live", "--model", "results/models/wa_wb", "--as", "woman_b",
                             str(media / "woman_a.mp4"), "--realtime", "--loop", "--serve", str(port)],
                            cwd=built, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    source = frames_of(media / "woman_a.mp4")
    face = slice(96, 416), slice(128, 384)  # woman_a's face, in the middle of every frame
    try:
        deadline = time.monotonic() + 90
        while True:  # the page answers once the model is loaded and the first frames flow
            try:
                status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2).read())
                if status["fps"] > 0:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 800, "height": 700})
            page.goto(f"http://127.0.0.1:{port}/")
            picture = page.locator("#picture")
            page.wait_for_function("document.getElementById('picture').naturalWidth === 512")
            time.sleep(1.5)  # the model's faces, not the first frames'

            def shot() -> np.ndarray:
                png = np.frombuffer(picture.screenshot(), np.uint8)
                return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

            first = shot()
            time.sleep(0.5)
            second = shot()
            assert first.shape == (512, 512, 3)
            assert np.abs(first[face].astype(float) - second[face]).mean() > 1  # a moving picture
            swapped_match = best_match(second, source, face)
            assert "fps" in page.locator("#status").inner_text()

            page.locator("#swap").uncheck()
            time.sleep(1.0)
            status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2).read())
            assert status["swap"] is False
            plain_match = best_match(shot(), source, face)
            browser.close()
        # Swap off: the face is one of the source's again (up to JPEG); on, it was not.
        assert plain_match > 30 and swapped_match < plain_match - 5, (swapped_match, plain_match)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bad_input_is_one_line_within_seconds(built, media, tmp_path):
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    silent = free_port()  # nothing sends there
    cases = {
        "/dev/video7": ["/dev/video7"],
        f"udp://127.0.0.1:{silent}": [f"udp://127.0.0.1:{silent}", "--timeout", "3"],
        "http://127.0.0.1:9/": ["http://127.0.0.1:9/"],
        str(not_a_model): [str(media / "woman_a.mp4"), "--model", str(not_a_model)],
        f"port {port}": [str(media / "woman_a.mp4"), "--serve", str(port)],
    }
    try:
        for named, args in cases.items():
            start = time.monotonic()
            proc = live(built, *args, "--stream", str(tmp_path / "out.mp4"), check=False)
            took = time.monotonic() - start
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 1 and len(lines) == 1 and named in lines[0], (named, proc.stderr[-2000:])
            assert "Traceback" not in proc.stderr and took < 20, (named, took)
            assert not (tmp_path / "out.mp4").exists()
    finally:
        blocker.close()
