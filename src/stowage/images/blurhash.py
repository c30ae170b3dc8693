"""BlurHash encoding (https://blurha.sh): a ~30-character placeholder a client decodes into a blurred
preview while the thumbnail loads. Pure Python over a tiny image (at most 32 px a side), so the cost is
the shrink-on-load decode, not this loop."""

from __future__ import annotations

import math
from collections.abc import Sequence

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def _to_linear(value: int) -> float:
    v = value / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _to_srgb(value: float) -> int:
    v = min(1.0, max(0.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _sign_pow(value: float, exponent: float) -> float:
    return math.copysign(abs(value) ** exponent, value)


def encode(rgb: bytes | Sequence[int], width: int, height: int, x_components: int = 4, y_components: int = 3) -> str:
    """The BlurHash of ``width`` x ``height`` packed 8-bit RGB pixels (row-major, 3 bytes a pixel)."""
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("BlurHash components must be between 1 and 9")
    if len(rgb) < width * height * 3 or width < 1 or height < 1:
        raise ValueError("pixel buffer smaller than width x height x 3")
    linear = [_to_linear(v) for v in rgb[: width * height * 3]]
    cos_x = [[math.cos(math.pi * i * x / width) for x in range(width)] for i in range(x_components)]
    cos_y = [[math.cos(math.pi * j * y / height) for y in range(height)] for j in range(y_components)]
    factors: list[tuple[float, float, float]] = []
    for j in range(y_components):
        for i in range(x_components):
            norm = 1.0 if i == 0 and j == 0 else 2.0
            r = g = b = 0.0
            for y in range(height):
                row = y * width * 3
                cy = cos_y[j][y]
                for x in range(width):
                    basis = cos_x[i][x] * cy
                    p = row + 3 * x
                    r += basis * linear[p]
                    g += basis * linear[p + 1]
                    b += basis * linear[p + 2]
            scale = norm / (width * height)
            factors.append((r * scale, g * scale, b * scale))
    dc, ac = factors[0], factors[1:]
    out = _base83((x_components - 1) + (y_components - 1) * 9, 1)
    if ac:
        actual_max = max(abs(v) for f in ac for v in f)
        quantised = max(0, min(82, math.floor(actual_max * 166 - 0.5)))
        max_value = (quantised + 1) / 166
        out += _base83(quantised, 1)
    else:
        max_value = 1.0
        out += _base83(0, 1)
    out += _base83((_to_srgb(dc[0]) << 16) + (_to_srgb(dc[1]) << 8) + _to_srgb(dc[2]), 4)
    for f in ac:
        q = [max(0, min(18, math.floor(_sign_pow(v / max_value, 0.5) * 9 + 9.5))) for v in f]
        out += _base83(q[0] * 19 * 19 + q[1] * 19 + q[2], 2)
    return out
