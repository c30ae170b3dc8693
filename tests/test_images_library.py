"""The pure image library (stowage.images) on real sample images: limits before decoding, orientation,
formats, fits, metadata stripping, facts (capture time, BlurHash) and GPS removal."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import pyvips
from PIL import Image

import image_samples as samples
from stowage.errors import InvalidInput
from stowage.images import (
    ImageDamaged,
    ImageLimits,
    ImageTimeout,
    ImageTooLarge,
    NotAnImage,
    image_facts,
    normalise,
    parse_key,
    probe,
    render,
    strip_gps,
)
from stowage.images.blurhash import encode

LIMITS = ImageLimits()


def params(width: int | None = 64, height: int | None = None, *, fit: str | None = None, fmt: str = "webp"):
    return normalise(width=width, height=height, fit=fit, quality=None, format=fmt, accept=None, limits=LIMITS)


def pixel(path: Path, x: int, y: int) -> tuple[int, ...]:
    with Image.open(path) as picture:
        return tuple(picture.convert("RGB").getpixel((x, y)))  # type: ignore[arg-type]


def is_red(rgb: tuple[int, ...]) -> bool:
    return rgb[0] > 180 and rgb[1] < 80


# --- inputs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "webp", "avif", "tiff", "gif"])
def test_every_input_format_renders(tmp_path: Path, fmt: str) -> None:
    source = samples.write(tmp_path, f"in.{fmt}", samples.encoded(fmt))
    out = render(source, params(60, fmt="png"), LIMITS, tmp_path / "out")
    assert (out.width, out.height) == (60, 40)
    assert is_red(pixel(out.path, 5, 5))
    assert not is_red(pixel(out.path, 55, 35))


def test_heic_from_an_iphone_is_decoded(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "photo.heic", samples.heic())
    info = probe(source, LIMITS)
    assert info.hevc
    assert (info.width, info.height) == (120, 80)
    out = render(source, params(60, fmt="jpeg"), LIMITS, tmp_path / "out")
    assert (out.width, out.height) == (60, 40)
    assert is_red(pixel(out.path, 5, 5))


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    # Orientation 6: the stored 120x80 picture is shown rotated 90° clockwise, 80x120, the red quarter top right.
    source = samples.write(tmp_path, "rotated.jpg", samples.jpeg(orientation=6))
    assert (probe(source, LIMITS).width, probe(source, LIMITS).height) == (80, 120)
    out = render(source, params(40, fmt="png"), LIMITS, tmp_path / "out")
    assert (out.width, out.height) == (40, 60)
    assert is_red(pixel(out.path, 35, 5))
    assert not is_red(pixel(out.path, 5, 5))


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "anim.gif", samples.animated_gif())
    assert probe(source, LIMITS).pages == 3
    out = render(source, params(32, fmt="png"), LIMITS, tmp_path / "out")
    assert is_red(pixel(out.path, 10, 10))


def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "bomb.png", samples.png_bomb())
    with pytest.raises(ImageTooLarge, match="50000x50000"):
        render(source, params(), LIMITS, tmp_path / "out")
    assert not list(tmp_path.glob("out*"))


def test_input_byte_limit(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "a.jpg", samples.jpeg())
    with pytest.raises(ImageTooLarge, match="bytes"):
        probe(source, ImageLimits(max_input_bytes=100))


def test_text_renamed_jpg_is_not_an_image(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "notes.jpg", b"just some text, honestly\n" * 20)
    with pytest.raises(NotAnImage):
        render(source, params(), LIMITS, tmp_path / "out")


def test_svg_is_not_decoded(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    with pytest.raises(NotAnImage):
        probe(source, LIMITS)


def test_truncated_jpeg_is_damaged_and_leaves_no_output(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "cut.jpg", samples.truncated_jpeg())
    with pytest.raises(ImageDamaged):
        render(source, params(), LIMITS, tmp_path / "out")
    assert not list(tmp_path.glob("out*"))


def test_timeout_stops_the_transform(tmp_path: Path) -> None:
    noise = pyvips.Image.gaussnoise(3000, 2000).cast("uchar")
    source = samples.write(tmp_path, "big.png", bytes(noise.write_to_buffer(".png", compression=0)))
    with pytest.raises(ImageTimeout):
        render(source, params(2000, fmt="avif"), ImageLimits(timeout=0.01), tmp_path / "out")


# --- outputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
@pytest.mark.parametrize(("fit", "size"), [("cover", (50, 50)), ("contain", (50, 50)), ("inside", (50, 33))])
def test_formats_and_fits(tmp_path: Path, fmt: str, fit: str, size: tuple[int, int]) -> None:
    source = samples.write(tmp_path, "a.jpg", samples.jpeg())
    out = render(source, params(50, 50, fit=fit, fmt=fmt), LIMITS, tmp_path / "out")
    loaded = pyvips.Image.new_from_file(str(out.path))
    assert (loaded.width, loaded.height) == size == (out.width, out.height)
    assert loaded.get("vips-loader").startswith({"jpeg": "jpeg", "png": "png", "webp": "webp", "avif": "heif"}[fmt])
    assert out.size == out.path.stat().st_size


def test_never_enlarges(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "a.jpg", samples.jpeg())
    out = render(source, params(1000, fmt="png"), LIMITS, tmp_path / "out")
    assert (out.width, out.height) == (120, 80)


@pytest.mark.parametrize("source_kind", ["jpeg", "heic"])
def test_metadata_and_gps_are_stripped_from_derivatives(tmp_path: Path, source_kind: str) -> None:
    data = samples.jpeg(orientation=6) if source_kind == "jpeg" else samples.heic()
    assert samples.gps_of(data)
    source = samples.write(tmp_path, "in", data)
    for fmt in ("jpeg", "webp", "png", "avif"):
        out = render(source, params(40, fmt=fmt), LIMITS, tmp_path / f"out-{fmt}")
        fields = pyvips.Image.new_from_file(str(out.path)).get_fields()
        assert not [f for f in fields if f.startswith(("exif", "xmp", "iptc", "icc"))], fields
        assert b"Stowage Test Camera" not in out.path.read_bytes()


# --- parameters ----------------------------------------------------------------------------------------


def test_parameters_are_normalised_into_one_key() -> None:
    a = normalise(width=256, height=None, fit="cover", quality=None, format="webp", accept=None, limits=LIMITS)
    b = normalise(width=256, height=None, fit="contain", quality=80, format=None, accept="image/webp", limits=LIMITS)
    assert a == b
    assert a.key() == "w256-h0-inside-q80-webp"
    assert parse_key(a.key()) == a
    assert normalise(width=1, height=2, fit=None, quality=None, format="png", accept=None, limits=LIMITS).quality == 100


@pytest.mark.parametrize(
    ("accept", "alpha", "expected"),
    [
        ("image/avif,image/webp,*/*", False, "webp"),
        ("image/avif", False, "avif"),
        ("image/webp;q=0, image/avif", False, "avif"),
        ("*/*", False, "jpeg"),
        (None, True, "png"),
    ],
)
def test_auto_format_from_accept(accept: str | None, alpha: bool, expected: str) -> None:
    chosen = normalise(
        width=9, height=None, fit=None, quality=None, format="auto", accept=accept, limits=LIMITS, has_alpha=alpha
    )
    assert chosen.format == expected


def test_bad_parameters_name_every_problem_and_the_allowed_sizes() -> None:
    limits = ImageLimits(allowed_sizes=(128, 256), max_output_dimension=1000)
    with pytest.raises(InvalidInput) as caught:
        normalise(width=100, height=5000, fit="stretch", quality=0, format="bmp", accept=None, limits=limits)
    fields = {e.field for e in caught.value.errors}
    assert fields == {"query.w", "query.h", "query.fit", "query.q", "query.format"}
    assert "128, 256" in caught.value.detail
    assert caught.value.extra["allowed_sizes"] == [128, 256]
    only_128 = ImageLimits(allowed_sizes=(128,))
    with pytest.raises(InvalidInput, match="allowed sizes: 128"):  # the default 256x256 tile is checked too
        normalise(width=None, height=None, fit=None, quality=None, format=None, accept=None, limits=only_128)
    bare = normalise(width=None, height=None, fit=None, quality=None, format="png", accept=None, limits=limits)
    assert (bare.width, bare.height, bare.fit) == (256, 256, "cover")


@pytest.mark.parametrize(
    "bad", ["", "w1-h2-cover-q80", "w1-h2-stretch-q80-webp", "x1-h2-cover-q80-webp", "wa-h2-cover-q8-webp"]
)
def test_parse_key_refuses_malformed_keys(bad: str) -> None:
    with pytest.raises(ValueError, match="not a transform key"):
        parse_key(bad)


# --- facts ---------------------------------------------------------------------------------------------


def test_facts_of_a_rotated_jpeg(tmp_path: Path) -> None:
    source = samples.write(tmp_path, "a.jpg", samples.jpeg(orientation=6))
    facts = image_facts(source, LIMITS)
    assert (facts.width, facts.height) == (80, 120)
    assert facts.taken_at == datetime(2024, 5, 1, 14, 3, 22, tzinfo=timezone(timedelta(hours=2)))
    assert facts.taken_at_offset_known
    assert facts.blurhash is not None
    assert len(facts.blurhash) == 2 + 4 + 2 * 11


def test_facts_of_a_heic_and_of_an_image_without_exif(tmp_path: Path) -> None:
    facts = image_facts(samples.write(tmp_path, "a.heic", samples.heic()), LIMITS)
    assert (facts.width, facts.height) == (120, 80)
    assert facts.taken_at is not None
    assert facts.taken_at.utcoffset() == timedelta(hours=2)
    plain = image_facts(samples.write(tmp_path, "a.png", samples.encoded("png", alpha=True)), LIMITS)
    assert plain.taken_at is None
    assert plain.has_alpha
    assert plain.blurhash


def test_capture_time_without_offset_is_marked_utc(tmp_path: Path) -> None:
    picture = Image.new("RGB", (8, 8))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif.tobytes())
    facts = image_facts(samples.write(tmp_path, "a.jpg", out.getvalue()), LIMITS)
    assert facts.taken_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert not facts.taken_at_offset_known


def test_blurhash_matches_the_reference_encoder() -> None:
    # A flat colour: DC only, and the reference implementation's known value for 4x3 components.
    flat = bytes([255, 0, 0] * 16)
    assert encode(flat, 4, 4, 1, 1) == "00TI:j"
    assert encode(bytes([0, 0, 0] * 16), 4, 4, 1, 1) == "000000"


# --- GPS removal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpeg", "heic", "png", "webp", "tiff"])
def test_strip_gps_keeps_the_picture_and_the_rest(tmp_path: Path, kind: str) -> None:
    if kind == "jpeg":
        data = samples.jpeg(orientation=6)
    elif kind == "heic":
        data = samples.heic()
    else:
        with Image.open(io.BytesIO(samples.jpeg(orientation=6))) as picture:
            out = io.BytesIO()
            picture.save(out, kind.upper(), exif=picture.getexif().tobytes())
            data = out.getvalue()
    assert samples.gps_of(data), "the sample must carry a position"
    source = samples.write(tmp_path, "in", data)
    assert strip_gps(source, tmp_path / "out") is True
    cleaned = (tmp_path / "out").read_bytes()
    assert len(cleaned) == len(data)
    assert samples.gps_of(cleaned) == {}
    before, after = image_facts(source, LIMITS), image_facts(tmp_path / "out", LIMITS)
    assert after == before  # orientation, capture time and pixels untouched
    assert strip_gps(tmp_path / "out", tmp_path / "again") is False


def test_strip_gps_of_an_image_without_gps_is_an_identical_copy(tmp_path: Path) -> None:
    data = samples.jpeg(gps=False)
    assert strip_gps(samples.write(tmp_path, "in.jpg", data), tmp_path / "out.jpg") is False
    assert (tmp_path / "out.jpg").read_bytes() == data
