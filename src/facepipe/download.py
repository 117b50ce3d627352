"""download: bring one source into the build, keeping where it came from.

URLs go through yt-dlp (best mp4 with audio up to `download.max_height`); local videos
and photo folders are copied as they are. Each source becomes a folder holding the
media and `info.json` (id, title, duration, URL or path, size, rate)."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import media
from .errors import FacepipeError
from .formats import download_info
from .fsutil import atomic_dir
from .settings import DownloadSettings


def _fetch_url(url: str, tmp: Path, settings: DownloadSettings) -> tuple[Path, dict]:
    import yt_dlp

    height = settings.max_height
    options = {
        "format": f"bv*[height<={height}][ext=mp4]+ba[ext=m4a]/b[height<={height}][ext=mp4]/b[height<={height}]/b",
        "merge_output_format": "mp4",
        "outtmpl": str(tmp / "video.%(ext)s"),
        "ffmpeg_location": media.FFMPEG,
        "retries": settings.retries,
        "noplaylist": True,
        "quiet": True,
        "noprogress": False,
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as exc:
        message = str(exc).replace("ERROR: ", "").splitlines()[0]
        raise FacepipeError(f"download: {url}: {message} (downloads need network access)") from None
    path = Path(info["requested_downloads"][0]["filepath"])
    provenance = {
        "id": info.get("id"),
        "title": info.get("title"),
        "duration": info.get("duration"),
        "url": info.get("webpage_url") or url,
        "extractor": info.get("extractor"),
        "uploader": info.get("uploader"),
        "upload_date": info.get("upload_date"),
    }
    return path, provenance


def _copy_photos(folder: Path, tmp: Path) -> list[str]:
    """Copy the photos of a folder (or one photo) into tmp/photos."""
    photos = tmp / "photos"
    photos.mkdir()
    if folder.is_file():
        shutil.copy2(folder, photos / folder.name)
        return [folder.name]
    kept = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in media.IMAGE_SUFFIXES:
            continue
        shutil.copy2(path, photos / path.name)
        kept.append(path.name)
    skipped = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in kept and not p.name.startswith("."))
    if skipped:
        print(f"download: {folder}: skipped {len(skipped)} file(s) that are not photos: {', '.join(skipped)}")
    return kept


# RetinaFace's smallest faces (its smallest anchors): a smaller picture cannot show one.
MIN_SIDE = 16


def _probe_picture(path: Path, location: str) -> media.VideoInfo:
    """The video at `path`, refused (naming `location`) unless it is one whose picture
    can show a face."""
    video = media.probe(path)
    if min(video.width, video.height) < MIN_SIDE:
        raise FacepipeError(f"download: {location}: the picture is only {video.width}x{video.height} px, too small to "
                            f"show a face (faces are found from {MIN_SIDE} px); give the video at its full size")
    return video


def run(*, location: str, kind: str, source_id: str, out_dir: str | Path, settings: DownloadSettings) -> dict:
    with atomic_dir(out_dir) as tmp:
        if kind == "url":
            path, info = _fetch_url(location, tmp, settings)
            probe = _probe_picture(path, location)
        elif kind == "video":
            src = Path(location)
            if not src.is_file():
                raise FacepipeError(f"download: {location}: file not found")
            probe = _probe_picture(src, location)  # refuse a non-video before copying it
            path = tmp / f"video{src.suffix.lower()}"
            shutil.copy2(src, path)
            info = {"id": source_id, "title": src.stem, "path": location}
        elif kind == "photos":
            photos = _copy_photos(Path(location), tmp)
            info = {"id": source_id, "title": Path(location).name, "path": location, "photos": photos}
        else:
            raise FacepipeError(f"download: unknown source kind {kind!r}")
        info = {"source": location, "kind": kind, **info}
        if kind != "photos":
            info.update(file=path.name, width=probe.width, height=probe.height, fps=probe.fps_text,
                        has_audio=probe.has_audio)
            info["duration"] = info.get("duration") or probe.duration
        download_info.write(tmp, info)
    return info
