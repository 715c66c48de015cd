"""What the bytes of an image file say before any decode: its format's magic number, and
whether a JPEG is whole. The manifest checks files with it, the decoder checks bytes."""

from __future__ import annotations

# Magic numbers of the formats we expect: a file starting with one of these that PIL cannot
# open is a cut-off image ("truncated"), anything else is "not_image".
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")
JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
TAIL_BYTES = 4096  # enough for the end marker after any zero padding a writer adds


def is_jpeg(head: bytes) -> bool:
    return head[:2] == JPEG_SOI


def jpeg_is_whole(tail: bytes) -> bool:
    """A JPEG's last bytes end with its end-of-image marker (zero padding allowed). libjpeg
    pads a cut-off file silently, so the missing marker is what gives a truncated one away."""
    return tail.rstrip(b"\0")[-2:] == JPEG_EOI


def file_tail(fh, n: int = TAIL_BYTES) -> bytes:
    """The last n bytes of an open binary file (all of it if shorter)."""
    fh.seek(0, 2)
    fh.seek(max(0, fh.tell() - n))
    return fh.read()
