"""Real sample images made in the tests (no binary fixtures in the repository): what phones and cameras
send, and what attackers send. Shared by the image library, endpoint and facts tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pillow_heif
import pyvips
from PIL import Image

TAKEN = "2024:05:01 14:03:22"
GPS_LATITUDE = (52.0, 30.0, 0.0)


def _picture(width: int = 120, height: int = 80) -> Image.Image:
    """Two colours so orientation and crops are visible: red top-left quarter, green elsewhere."""
    picture = Image.new("RGB", (width, height), (10, 200, 30))
    picture.paste((250, 0, 0), (0, 0, width // 2, height // 2))
    return picture


def _exif(orientation: int = 1, *, gps: bool = True, taken: str | None = TAKEN, offset: str | None = "+02:00") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Stowage Test Camera"
    sub = exif.get_ifd(0x8769)
    if taken:
        sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    if gps:
        position = exif.get_ifd(0x8825)
        position[1], position[2], position[3], position[4] = "N", GPS_LATITUDE, "E", (13.0, 24.0, 0.0)
    return exif.tobytes()


def jpeg(orientation: int = 1, *, gps: bool = True, size: tuple[int, int] = (120, 80)) -> bytes:
    """A JPEG with EXIF (orientation, capture time with offset, GPS position)."""
    out = io.BytesIO()
    _picture(*size).save(out, "JPEG", quality=90, exif=_exif(orientation, gps=gps))
    return out.getvalue()


def heic(*, gps: bool = True) -> bytes:
    """An iPhone-style HEIC (HEVC-coded) with EXIF, written by pillow-heif's x265 encoder."""
    out = io.BytesIO()
    pillow_heif.from_pillow(_picture()).save(out, format="HEIF", quality=80, exif=_exif(gps=gps))
    return out.getvalue()


def encoded(fmt: str, *, alpha: bool = False) -> bytes:
    """PNG, WebP, AVIF, TIFF or GIF (one frame) of the sample picture, encoded by libvips."""
    picture = _picture().convert("RGBA") if alpha else _picture()
    image = pyvips.Image.new_from_memory(
        picture.tobytes(), picture.width, picture.height, 4 if alpha else 3, "uchar"
    ).copy(interpretation="srgb")
    return bytes(image.write_to_buffer("." + fmt))


def animated_gif(frames: int = 3) -> bytes:
    """A GIF whose frames differ: the first one is red, later ones blue."""
    pictures = [Image.new("RGB", (64, 48), (255, 0, 0) if i == 0 else (0, 0, 100 + 50 * i)) for i in range(frames)]
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=100, loop=0)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """A large noisy JPEG cut in half (an upload that broke off)."""
    noise = pyvips.Image.gaussnoise(800, 600).cast("uchar")
    data = bytes(noise.bandjoin([noise, noise]).copy(interpretation="srgb").write_to_buffer(".jpg", Q=90))
    return data[: len(data) // 2]


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(bytes(pyvips.Image.black(1, 1).write_to_buffer(".png")))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def gps_of(data: bytes) -> dict[int, object]:
    """The GPS directory of an image's EXIF (empty when there is none) — read by Pillow, independently."""
    if data[:4] in (b"\x00\x00\x00\x1c", b"\x00\x00\x00\x18") or data[4:8] == b"ftyp":
        info = pillow_heif.open_heif(io.BytesIO(data)).info
        raw = info.get("exif")
        if not raw:
            return {}
        exif = Image.Exif()
        exif.load(raw)
        return dict(exif.get_ifd(0x8825))
    with Image.open(io.BytesIO(data)) as picture:
        return dict(picture.getexif().get_ifd(0x8825))


def encoded_noise(width: int, height: int) -> bytes:
    """A PNG of random colour noise: every derivative of it is large (for cache-size tests)."""
    noise = [pyvips.Image.gaussnoise(width, height, sigma=80, mean=128).cast("uchar") for _ in range(3)]
    return bytes(noise[0].bandjoin(noise[1:]).copy(interpretation="srgb").write_to_buffer(".png"))
