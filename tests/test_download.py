"""download: through yt-dlp from an HTTP server on 127.0.0.1, and from a local path."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading

import pytest

from conftest import BIN, ROOT, earlier_output, run
from facepipe.media import probe


def facepipe_download(*args, cwd, check=True):
    return run([str(BIN / "facepipe"), "download", "--params", str(ROOT / "params.yaml"), *args], cwd, check)


@pytest.fixture
def http_server(media, tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(media / "man_a.mp4", served / "talk.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_url_with_yt_dlp(http_server, media, tmp_path):
    url = f"{http_server}/talk.mp4"
    out = tmp_path / "dl"
    facepipe_download("--source", url, "--kind", "url", "--id", "talk", "--out", str(out), cwd=tmp_path)
    info = json.loads((out / "info.json").read_text())
    assert info["url"] == url and info["kind"] == "url" and info["extractor"] == "generic"
    video = probe(out / info["file"])
    assert (video.width, video.height, video.fps) == (480, 480, 30)
    assert abs(info["duration"] - probe(media / "man_a.mp4").duration) < 0.1
    assert (out / info["file"]).read_bytes() == (media / "man_a.mp4").read_bytes()


def test_download_bad_url_is_one_line(http_server, tmp_path):
    untouched = earlier_output(tmp_path / "dl", folder=True)
    proc = facepipe_download("--source", f"{http_server}/missing.mp4", "--kind", "url", "--id", "x",
                             "--out", str(tmp_path / "dl"), cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("facepipe download: error:")
    assert "missing.mp4" in proc.stderr
    untouched()


def test_download_local_file(media, tmp_path):
    out = tmp_path / "dl"
    facepipe_download("--source", str(media / "woman_a.mp4"), "--kind", "video", "--id", "woman_a",
                      "--out", str(out), cwd=tmp_path)
    info = json.loads((out / "info.json").read_text())
    assert info["source"] == str(media / "woman_a.mp4") and info["has_audio"]
    assert (out / "video.mp4").read_bytes() == (media / "woman_a.mp4").read_bytes()
