"""Media type sniffing, active-content classification and the headers user content is served with."""

from __future__ import annotations

import codecs
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stowage.files.media_types import (
    OCTET_STREAM,
    sniff_media_type,
    type_from_extension,
)
from stowage.http.content_safety import (
    ACTIVE_TYPES,
    SANDBOX_POLICY,
    is_active_content,
    must_download,
    safe_serving_headers,
)


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08free"


def _riff(form: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 1000) + form + b"\x00" * 8


def _tar() -> bytes:
    header = bytearray(512)
    header[0:9] = b"notes.txt"
    header[257:263] = b"ustar\x00"
    return bytes(header)


def _bmp(dib_size: int = 40) -> bytes:
    return b"BM" + struct.pack("<I", 1000) + b"\x00\x00\x00\x00" + struct.pack("<II", 54, dib_size) + b"\x00" * 16


_MZ = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48

BINARY_FORMATS = [
    pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg", id="jpeg"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png", id="png"),
    pytest.param(b"GIF87a\x01\x00\x01\x00", "image/gif", id="gif87"),
    pytest.param(b"GIF89a\x01\x00\x01\x00", "image/gif", id="gif89"),
    pytest.param(_riff(b"WEBP") + b"VP8 ", "image/webp", id="webp"),
    pytest.param(_ftyp(b"heic", b"mif1", b"heic"), "image/heic", id="heic"),
    pytest.param(_ftyp(b"heix", b"mif1"), "image/heic", id="heix"),
    pytest.param(_ftyp(b"mif1", b"mif1", b"heic"), "image/heic", id="heif-with-heic-brand"),
    pytest.param(_ftyp(b"mif1", b"mif1", b"miaf"), "image/heif", id="heif"),
    pytest.param(_ftyp(b"msf1", b"msf1"), "image/heif", id="heif-sequence"),
    pytest.param(_ftyp(b"avif", b"mif1", b"miaf"), "image/avif", id="avif"),
    pytest.param(_ftyp(b"avis", b"msf1"), "image/avif", id="avif-sequence"),
    pytest.param(_ftyp(b"mif1", b"avif", b"miaf"), "image/avif", id="heif-with-avif-brand"),
    pytest.param(b"II*\x00\x08\x00\x00\x00", "image/tiff", id="tiff-le"),
    pytest.param(b"MM\x00*\x00\x00\x00\x08", "image/tiff", id="tiff-be"),
    pytest.param(_bmp(), "image/bmp", id="bmp"),
    pytest.param(_bmp(124), "image/bmp", id="bmp-v5"),
    pytest.param(b"\x00\x00\x01\x00\x01\x00\x10\x10", "image/vnd.microsoft.icon", id="ico"),
    pytest.param(b"\x00\x00\x02\x00\x01\x00\x10\x10", "image/vnd.microsoft.icon", id="cur"),
    pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf", id="pdf"),
    pytest.param(b"%!PS-Adobe-3.0\n", "application/postscript", id="postscript"),
    pytest.param(b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "application/zip", id="zip"),
    pytest.param(b"PK\x05\x06" + b"\x00" * 18, "application/zip", id="empty-zip"),
    pytest.param(b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "application/gzip", id="gzip"),
    pytest.param(b"7z\xbc\xaf\x27\x1c\x00\x04", "application/x-7z-compressed", id="7z"),
    pytest.param(b"Rar!\x1a\x07\x00\xcf\x90", "application/vnd.rar", id="rar4"),
    pytest.param(b"Rar!\x1a\x07\x01\x00\x33\x92", "application/vnd.rar", id="rar5"),
    pytest.param(b"BZh91AY&SY\x00", "application/x-bzip2", id="bzip2"),
    pytest.param(b"\xfd7zXZ\x00\x00\x04", "application/x-xz", id="xz"),
    pytest.param(b"\x28\xb5\x2f\xfd\x04\x58", "application/zstd", id="zstd"),
    pytest.param(_tar(), "application/x-tar", id="tar"),
    pytest.param(b"ID3\x04\x00\x00\x00\x00\x00\x23", "audio/mpeg", id="mp3-id3"),
    pytest.param(b"\xff\xfb\x90\x64\x00", "audio/mpeg", id="mp3-frame"),
    pytest.param(b"\xff\xf3\x48\xc4\x00", "audio/mpeg", id="mp3-mpeg2-frame"),
    pytest.param(b"\xff\xf1\x50\x80\x02\x1f\xfc", "audio/aac", id="aac-adts"),
    pytest.param(_ftyp(b"isom", b"isom", b"iso2", b"mp41"), "video/mp4", id="mp4-isom"),
    pytest.param(_ftyp(b"mp41", b"mp41"), "video/mp4", id="mp4-mp41"),
    pytest.param(_ftyp(b"mp42", b"mp42", b"isom"), "video/mp4", id="mp4-mp42"),
    pytest.param(_ftyp(b"XAVC", b"mp42"), "video/mp4", id="mp4-compatible-brand"),
    pytest.param(_ftyp(b"qt  ", b"qt  "), "video/quicktime", id="mov"),
    pytest.param(_ftyp(b"M4A ", b"M4A ", b"mp42"), "audio/mp4", id="m4a"),
    pytest.param(_ftyp(b"3gp4", b"3gp4"), "video/3gpp", id="3gp"),
    pytest.param(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm", id="webm"),
    pytest.param(b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska", id="mkv"),
    pytest.param(b"OggS\x00\x02" + b"\x00" * 22 + b"\x01\x1e\x01vorbis", "audio/ogg", id="ogg-vorbis"),
    pytest.param(b"OggS\x00\x02" + b"\x00" * 22 + b"OpusHead", "audio/ogg", id="ogg-opus"),
    pytest.param(b"OggS\x00\x02" + b"\x00" * 22 + b"\x80theora", "video/ogg", id="ogg-theora"),
    pytest.param(b"fLaC\x00\x00\x00\x22", "audio/flac", id="flac"),
    pytest.param(_riff(b"WAVE") + b"fmt ", "audio/wav", id="wav"),
    pytest.param(_riff(b"AVI ") + b"LIST", "video/x-msvideo", id="avi"),
    pytest.param(b"MThd\x00\x00\x00\x06\x00\x01", "audio/midi", id="midi"),
    pytest.param(b"wOFF\x00\x01\x00\x00", "font/woff", id="woff"),
    pytest.param(b"wOF2\x00\x01\x00\x00", "font/woff2", id="woff2"),
    pytest.param(b"\x00\x01\x00\x00\x00\x0f\x00\x80", "font/ttf", id="ttf"),
    pytest.param(b"true\x00\x0f\x00\x80", "font/ttf", id="ttf-apple"),
    pytest.param(b"OTTO\x00\x0b\x00\x80", "font/otf", id="otf"),
    pytest.param(b"ttcf\x00\x01\x00\x00", "font/collection", id="ttc"),
    pytest.param(b"SQLite format 3\x00\x10\x00", "application/vnd.sqlite3", id="sqlite"),
    pytest.param(b"\x00asm\x01\x00\x00\x00", "application/wasm", id="wasm"),
    pytest.param(b"\x7fELF\x02\x01\x01\x00", OCTET_STREAM, id="elf"),
    pytest.param(_MZ, OCTET_STREAM, id="pe"),
    pytest.param(b"\xcf\xfa\xed\xfe\x07\x00\x00\x01", OCTET_STREAM, id="mach-o"),
]


@pytest.mark.parametrize(("head", "expected"), BINARY_FORMATS)
def test_binary_signatures(head: bytes, expected: str) -> None:
    assert sniff_media_type(head, "upload.bin") == expected
    assert sniff_media_type(head, "") == expected


@pytest.mark.parametrize(("head", "expected"), BINARY_FORMATS)
def test_content_wins_over_a_misleading_name(head: bytes, expected: str) -> None:
    for name in ("photo.jpg", "page.html", "notes.txt", "image.svg", "data.json"):
        assert sniff_media_type(head, name) == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("letter.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("sheet.XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("talk.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        ("essay.odt", "application/vnd.oasis.opendocument.text"),
        ("book.epub", "application/epub+zip"),
        ("app.jar", "application/java-archive"),
        ("archive.zip", "application/zip"),
        ("photo.jpg", "application/zip"),  # a ZIP is not trusted to be anything else by its name
        ("page.html", "application/zip"),
        ("noextension", "application/zip"),
    ],
)
def test_zip_based_formats_are_named_by_extension_only_when_the_bytes_are_a_zip(filename: str, expected: str) -> None:
    assert sniff_media_type(b"PK\x03\x04\x14\x00\x06\x00\x08\x00", filename) == expected


def test_zip_extensions_do_not_apply_to_other_bytes() -> None:
    assert sniff_media_type(b"hello", "letter.docx") == "text/plain"
    assert sniff_media_type(b"\x00\x01\x02\x03", "letter.docx").startswith("application/vnd.openxmlformats")


# ---------------------------------------------------------------------------------------------- markup

HTML_HEADS = [
    b"<!DOCTYPE html>\n<html>",
    b"<!doctype HTML PUBLIC '-//W3C//DTD HTML 4.01//EN'>",
    b"<html><body>hi</body></html>",
    b"<HTML>",
    b"<Html lang=en>",
    b"<head><title>x</title></head>",
    b"<script>alert(1)</script>",
    b"<SCRIPT src=//evil.example/x.js></SCRIPT>",
    b"<body onload=alert(1)>",
    b"<iframe src=//evil.example>",
    b"<h1>Title</h1>",
    b"<div>",
    b"<table>",
    b"<a href=x>",
    b"<b>bold</b>",
    b"<p>para",
    b"<br/>",
    b"<style>body{}</style>",
    b"<title>t</title>",
    b"<font color=red>",
    b"<!-- comment --><script>",
    b"<!-- just a comment",
    b"  \t\r\n<html>",
    b"\xef\xbb\xbf<html>",
    b"\xef\xbb\xbf\n  <script>",
    codecs.BOM_UTF16_LE + "<html><script>".encode("utf-16-le"),
    codecs.BOM_UTF16_BE + "<html><script>".encode("utf-16-be"),
]


@pytest.mark.parametrize("head", HTML_HEADS)
def test_html_is_detected_whatever_the_name(head: bytes) -> None:
    for name in ("photo.jpg", "notes.txt", "page.html", "data.json", "", "image.png"):
        assert sniff_media_type(head, name) == "text/html"


def test_jpg_named_html_is_html_and_must_be_downloaded() -> None:
    media_type = sniff_media_type(b"<html><script>document.cookie</script></html>", "photo.jpg")
    assert media_type == "text/html"
    assert must_download(media_type)


@pytest.mark.parametrize(
    "head",
    [
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        b"<SVG>",
        b"  <svg\n  width='10'>",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg">',
        b'<?xml version="1.0"?>\n<!-- Generator: Illustrator -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg version="1.1">',
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN">',
        b"<!-- made by hand -->\n<svg>",
        b'<?xml version="1.0"?><svg:svg xmlns:svg="http://www.w3.org/2000/svg">',
        b"\xef\xbb\xbf<svg>",
    ],
)
def test_svg_is_detected_whatever_the_name(head: bytes) -> None:
    for name in ("photo.jpg", "drawing.svg", "data.xml", "notes.txt"):
        assert sniff_media_type(head, name) == "image/svg+xml"


def test_xml() -> None:
    feed = b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
    assert sniff_media_type(feed, "feed") == "application/xml"
    assert sniff_media_type(feed, "photo.jpg") == "application/xml"
    assert sniff_media_type(feed, "feed.xml") == "text/xml"  # the name may say which XML it is
    assert sniff_media_type(feed, "page.xhtml") == "application/xhtml+xml"
    assert sniff_media_type(b"<?XML version='1.0'?><a/>", "x") == "application/xml"
    xhtml = b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>'
    assert sniff_media_type(xhtml, "page.txt") == "application/xhtml+xml"
    assert sniff_media_type(b'<?xml version="1.0"?>\n<!DOCTYPE html>\n<html>', "x") == "application/xhtml+xml"


# ---------------------------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (b"hello world\n", "notes.txt", "text/plain"),
        (b"hello world\n", "noextension", "text/plain"),
        (b"hello world\n", "photo.jpg", "text/plain"),  # text is text, whatever the name says
        (b"hello world\n", "archive.zip", "text/plain"),
        ("Grüße, 日本語\n".encode(), "notes", "text/plain"),
        ("caf\u00e9".encode()[:-1], "cut.txt", "text/plain"),  # a character cut at the end of the head
        (b"a,b,c\n1,2,3\n", "data.csv", "text/csv"),
        (b"a\tb\n1\t2\n", "data.tsv", "text/tab-separated-values"),
        (b"# Title\n\nSome *markdown*.\n", "README.md", "text/markdown"),
        (b"# Title\n", "README.markdown", "text/markdown"),
        (b'{"a": 1}', "data.json", "application/json"),  # JSON only via the extension
        (b'{"a": 1}', "data", "text/plain"),
        (b"key: value\n", "config.yaml", "application/yaml"),
        (b"key = 1\n", "pyproject.toml", "application/toml"),
        (b"console.log(1)\n", "app.js", "text/javascript"),
        (b"console.log(1)\n", "app.mjs", "text/javascript"),
        (b"body { color: red }\n", "site.css", "text/css"),
        (b"print('hi')\n", "script.py", "text/x-python"),
        (b"#!/bin/sh\necho hi\n", "run.sh", "application/x-sh"),
        (b"just words", "page.html", "text/html"),  # the name may make text active, never less so
        (b"just words", "image.svg", "image/svg+xml"),
        (b"\x1b[31mred\x1b[0m\n", "build.log", "text/plain"),
        (b"\xef\xbb\xbfhello", "bom.txt", "text/plain"),
        (codecs.BOM_UTF16_LE + "hello".encode("utf-16-le"), "utf16.txt", "text/plain"),
        (b"   \n\t\n", "blank.jpg", "text/plain"),
        (b"BMW is a car\n", "cars.txt", "text/plain"),  # "BM" alone is not a bitmap
        (b"MZ is not a program\n", "x.txt", "text/plain"),
        (b"ID3 is a tag format\n", "x.txt", "text/plain"),
        (b"BZh is not bzip2\n", "x.txt", "text/plain"),
        (b"<notatag", "x.txt", "text/plain"),
        (b"<abbr>HTML</abbr>", "x.txt", "text/plain"),  # not one of the sniffed tags
        (b"hello <script>alert(1)</script>", "x.txt", "text/plain"),  # markup only counts at the start
    ],
)
def test_text(head: bytes, filename: str, expected: str) -> None:
    assert sniff_media_type(head, filename) == expected


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (b"", "photo.heic", "image/heic"),
        (b"", "photo.webp", "image/webp"),
        (b"", "photo.avif", "image/avif"),
        (b"", "notes.md", "text/markdown"),
        (b"", "PHOTO.JPG", "image/jpeg"),
        (b"", "a.b.tar.gz", "application/gzip"),
        (b"", "archive.tgz", "application/gzip"),
        (b"", "movie.mkv", "video/x-matroska"),
        (b"", "font.woff2", "font/woff2"),
        (b"", "dir/sub/song.flac", "audio/flac"),
        (b"", "C:\\Users\\me\\song.mp3", "audio/mpeg"),
        (b"", "empty", OCTET_STREAM),
        (b"", ".bashrc", OCTET_STREAM),  # a leading dot is a hidden file, not an extension
        (b"", "trailing.", OCTET_STREAM),
        (b"", "x.unknownext", OCTET_STREAM),
        (b"\x00\x01\x02\x03\xfe\xfd", "blob", OCTET_STREAM),  # binary, unknown, no extension
        (b"\x00\x01\x02\x03\xfe\xfd", "photo.jpg", "image/jpeg"),  # unrecognised bytes: the name decides
        (b"\x80\x81\x82 latin-1 \xe9t\xe9", "old.txt", "text/plain"),
        (b"\x80\x81\x82 latin-1 \xe9t\xe9", "old", OCTET_STREAM),
        (b"text\x00with nul", "x", OCTET_STREAM),
        (b"text\x01control", "x", OCTET_STREAM),
    ],
)
def test_extension_fallback(head: bytes, filename: str, expected: str) -> None:
    assert sniff_media_type(head, filename) == expected


def test_type_from_extension() -> None:
    assert type_from_extension("a.PNG") == "image/png"
    assert type_from_extension("a.wav") == "audio/wav"  # not the legacy audio/x-wav
    assert type_from_extension("a.gz") == "application/gzip"  # not the gzip *encoding* of nothing
    assert type_from_extension("a") is None
    assert type_from_extension(".profile") is None
    assert type_from_extension("a.nosuchtype") is None


def test_not_fooled_by_utf16_text_that_looks_like_an_mpeg_frame() -> None:
    assert sniff_media_type(codecs.BOM_UTF16_LE + "abc".encode("utf-16-le"), "x") == "text/plain"


@pytest.mark.parametrize(
    "head",
    [
        b"\xff\xfb",  # too short to be a frame header
        b"\xff\xeb\x90\x64",  # reserved MPEG version
        b"\xff\xfb\xf0\x64",  # bad bitrate index
        b"\xff\xfb\x9c\x64",  # reserved sample rate
        b"\xff\xe9\x50\x80",  # ADTS (layer 0) without its 12-bit sync word
        b"\x00\x00\x00\x14ftypzzzz\x00\x00\x00\x00zzzz",  # an ftyp box with brands we do not know
        b"BM" + b"\x01" * 30,  # "BM" without zero reserved words
    ],
)
def test_near_misses_are_not_detected(head: bytes) -> None:
    assert sniff_media_type(head, "x") == OCTET_STREAM


@given(head=st.binary(max_size=600), filename=st.text(max_size=30))
def test_sniff_always_answers_a_lowercase_media_type(head: bytes, filename: str) -> None:
    media_type = sniff_media_type(head, filename)
    main, slash, sub = media_type.partition("/")
    assert main
    assert slash
    assert sub
    assert media_type == media_type.lower()
    assert ";" not in media_type


# ---------------------------------------------------------------------------------------------- active content


@pytest.mark.parametrize(
    "media_type",
    [
        "text/html",
        "TEXT/HTML",
        "text/html; charset=utf-8",
        " text/html ;charset=utf-8",
        "application/xhtml+xml",
        "image/svg+xml",
        "Image/SVG+XML; charset=utf-8",
        "text/xml",
        "application/xml",
        "application/rss+xml",  # any +xml
        "application/atom+xml",
        "application/vnd.example+xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-javascript",
        "text/jscript",
        "text/css",
        "text/css; charset=utf-8",
        "multipart/x-mixed-replace; boundary=x",
        "application/wasm",
    ],
)
def test_active_content(media_type: str) -> None:
    assert is_active_content(media_type)
    assert must_download(media_type)


@pytest.mark.parametrize(
    "media_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "text/csv",
        "text/markdown",
        "application/pdf",  # rendered in the browser's isolated viewer
        "application/json",
        "application/octet-stream",
        "application/zip",
        "image/png",
        "image/jpeg",
        "image/heic",
        "video/mp4",
        "audio/mpeg",
        "font/woff2",
        "",
        "garbage",
        "text/htmlx",
        "application/xmlish",
    ],
)
def test_passive_content(media_type: str) -> None:
    assert not is_active_content(media_type)
    assert not must_download(media_type)


def test_active_types_are_normalised_essences() -> None:
    for media_type in ACTIVE_TYPES:
        assert media_type == media_type.strip().lower()
        assert ";" not in media_type


@pytest.mark.parametrize("media_type", ["text/html", "image/svg+xml", "image/png", "text/plain", "video/mp4", ""])
def test_safe_serving_headers(media_type: str) -> None:
    assert safe_serving_headers(media_type) == {
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
    }
    assert SANDBOX_POLICY == "default-src 'none'; sandbox"


def test_pdf_is_served_without_the_sandbox_so_browsers_can_show_it() -> None:
    assert safe_serving_headers("application/pdf") == {"x-content-type-options": "nosniff"}
    assert safe_serving_headers("Application/PDF; x=y") == {"x-content-type-options": "nosniff"}


def test_sniffed_markup_is_always_active() -> None:
    for head in [*HTML_HEADS, b"<svg>", b"<?xml version='1.0'?><a/>"]:
        for name in ("a.jpg", "a.txt", "a"):
            assert must_download(sniff_media_type(head, name)), (head, name)
