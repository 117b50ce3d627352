"""Tagging outputs as synthetic media: the tags a container carries (ffmpeg metadata)
and a comment written into the bytes of an image itself, for the formats that have a
place for one (JPEG COM segment, PNG tEXt chunk, WebP XMP, GIF comment extension)."""

from __future__ import annotations

import html
import zlib

from .errors import FacepipeError

SYNTHETIC_TAGS = {
    "comment": "Synthetic media: faces in this file were replaced by facepipe (AI face swap).",
    "synthetic_media": "true",
}
# Photo formats that can carry the synthetic-media comment.
COMMENT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _gif_blocks_start(data: bytes) -> int:
    """Where a GIF's blocks begin: after the header, screen descriptor and global colour table."""
    flags = data[10]
    return 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)


def gif_with_comment(data: bytes, comment: str) -> bytes:
    """Insert a GIF89a comment extension before the GIF's first block."""
    at = _gif_blocks_start(data)
    text = comment.encode("ascii", "replace")
    blocks = b"".join(bytes([len(text[i:i + 255])]) + text[i:i + 255] for i in range(0, len(text), 255))
    return data[:at] + b"\x21\xfe" + blocks + b"\x00" + data[at:]


def gif_blocks(data: bytes) -> tuple[int, list[str]]:
    """Walk a GIF's blocks: its frame count and its comments."""
    def skip_sub_blocks(at: int, collect: list | None = None) -> int:
        while data[at]:
            if collect is not None:
                collect.append(data[at + 1:at + 1 + data[at]])
            at += 1 + data[at]
        return at + 1

    at = _gif_blocks_start(data)
    frames, comments = 0, []
    while at < len(data) and data[at] != 0x3B:
        if data[at] == 0x21:  # extension: label, then sub-blocks
            parts = [] if data[at + 1] == 0xFE else None
            at = skip_sub_blocks(at + 2, parts)
            if parts is not None:
                comments.append(b"".join(parts).decode("ascii", "replace"))
        elif data[at] == 0x2C:  # image: descriptor, local colour table, LZW code size, data
            local = data[at + 9]
            at += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0) + 1
            at = skip_sub_blocks(at)
            frames += 1
        else:
            raise FacepipeError(f"not a well-formed GIF (block 0x{data[at]:02x} at byte {at})")
    return frames, comments


def jpeg_with_comment(data: bytes, comment: str) -> bytes:
    """Insert a JPEG comment (COM) segment after the start-of-image marker."""
    text = comment.encode("ascii", "replace")[:65000]
    return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]


def png_with_comment(data: bytes, comment: str) -> bytes:
    """Insert a tEXt "Comment" chunk after IHDR (signature 8 bytes + IHDR chunk 25)."""
    body = b"tEXt" + b"Comment\0" + comment.encode("latin-1", "replace")
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return data[:33] + chunk + data[33:]


def webp_with_comment(data: bytes, comment: str, width: int, height: int) -> bytes:
    """Make a simple (VP8/VP8L) WebP an extended one carrying an XMP packet whose
    dc:description is the comment; WebP has no plain comment field."""
    def chunk(fourcc: bytes, payload: bytes) -> bytes:
        return fourcc + len(payload).to_bytes(4, "little") + payload + b"\0" * (len(payload) % 2)

    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description>'
           f'{html.escape(comment)}</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>').encode()
    vp8x = chunk(b"VP8X", bytes([0x04, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))
    body = b"WEBP" + vp8x + data[12:] + chunk(b"XMP ", xmp)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def image_with_comment(data: bytes, suffix: str, comment: str, width: int, height: int) -> bytes:
    """An encoded image (of a COMMENT_SUFFIXES format) with `comment` written into it."""
    if suffix in (".jpg", ".jpeg"):
        return jpeg_with_comment(data, comment)
    if suffix == ".png":
        return png_with_comment(data, comment)
    return webp_with_comment(data, comment, width, height)
