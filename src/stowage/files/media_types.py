"""Media types: what a file's first bytes say it is, and how to serve it without running it.

``sniff_media_type`` looks at the content first and the name second. The content wins whenever it
is recognisable, so a file named ``photo.jpg`` that starts with ``<html>`` is ``text/html`` — that
is what a browser would make of it — and is then served as active content (``must_download``).
The name only refines what the bytes cannot tell apart: which ZIP-based document a ZIP is, which
text format a text file is. This module imports no web framework and does no I/O.
"""

from __future__ import annotations

import codecs
import functools
import mimetypes
import re

OCTET_STREAM = "application/octet-stream"

# ---------------------------------------------------------------------------------------------- extensions

# Common types Python's built-in table lacks or spells differently; consulted before it.
_EXTENSION_TYPES: dict[str, str] = {
    "7z": "application/x-7z-compressed",
    "apk": "application/vnd.android.package-archive",
    "avif": "image/avif",
    "bz2": "application/x-bzip2",
    "cjs": "text/javascript",
    "csv": "text/csv",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "epub": "application/epub+zip",
    "flac": "audio/flac",
    "gz": "application/gzip",
    "heic": "image/heic",
    "heif": "image/heif",
    "ico": "image/vnd.microsoft.icon",
    "jar": "application/java-archive",
    "js": "text/javascript",
    "jxl": "image/jxl",
    "log": "text/plain",
    "m4a": "audio/mp4",
    "markdown": "text/markdown",
    "md": "text/markdown",
    "mid": "audio/midi",
    "midi": "audio/midi",
    "mjs": "text/javascript",
    "mkv": "video/x-matroska",
    "odg": "application/vnd.oasis.opendocument.graphics",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odt": "application/vnd.oasis.opendocument.text",
    "oga": "audio/ogg",
    "ogg": "audio/ogg",
    "ogv": "video/ogg",
    "opus": "audio/ogg",
    "otf": "font/otf",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "rar": "application/vnd.rar",
    "sqlite": "application/vnd.sqlite3",
    "sqlite3": "application/vnd.sqlite3",
    "tgz": "application/gzip",
    "toml": "application/toml",
    "tsv": "text/tab-separated-values",
    "ttf": "font/ttf",
    "wav": "audio/wav",
    "webm": "video/webm",
    "webp": "image/webp",
    "woff": "font/woff",
    "woff2": "font/woff2",
    "xhtml": "application/xhtml+xml",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xz": "application/x-xz",
    "yaml": "application/yaml",
    "yml": "application/yaml",
    "zst": "application/zstd",
}

# Document formats that are ZIP files inside: trusted from the name only when the bytes are a ZIP.
_ZIP_CONTAINERS = frozenset(
    {"apk", "docx", "epub", "jar", "odg", "odp", "ods", "odt", "pptx", "xlsx"},
)


@functools.cache
def _builtin_types() -> mimetypes.MimeTypes:
    # A private table built from Python's defaults only: the host's /etc/mime.types would make
    # the answer depend on the machine.
    return mimetypes.MimeTypes()


def _extension(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    return extension.lower() if dot and stem else ""


def type_from_extension(filename: str) -> str | None:
    """The media type the file name suggests, or ``None`` when it suggests none."""
    extension = _extension(filename)
    if not extension:
        return None
    if known := _EXTENSION_TYPES.get(extension):
        return known
    guessed, encoding = _builtin_types().guess_type(f"file.{extension}", strict=False)
    return guessed.lower() if guessed and encoding is None else None


# ---------------------------------------------------------------------------------------------- binary signatures

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"%PDF-", "application/pdf"),
    (b"\x1f\x8b", "application/gzip"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07\x00", "application/vnd.rar"),
    (b"Rar!\x1a\x07\x01\x00", "application/vnd.rar"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"\x28\xb5\x2f\xfd", "application/zstd"),
    (b"fLaC", "audio/flac"),
    (b"MThd\x00\x00\x00\x06", "audio/midi"),
    (b"wOFF", "font/woff"),
    (b"wOF2", "font/woff2"),
    (b"\x00\x01\x00\x00\x00", "font/ttf"),
    (b"true\x00", "font/ttf"),
    (b"OTTO\x00", "font/otf"),
    (b"ttcf\x00", "font/collection"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (b"\x00asm", "application/wasm"),
    (b"%!PS-Adobe-", "application/postscript"),
    # Executables are served as opaque bytes whatever their name.
    (b"\x7fELF", OCTET_STREAM),
    (b"\xfe\xed\xfa\xce", OCTET_STREAM),
    (b"\xfe\xed\xfa\xcf", OCTET_STREAM),
    (b"\xce\xfa\xed\xfe", OCTET_STREAM),
    (b"\xcf\xfa\xed\xfe", OCTET_STREAM),
)

_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_RIFF_FORMS = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}

# ISO base media file format major/compatible brands (ftyp box), most specific first.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_FTYP_BRANDS: dict[bytes, str] = {
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"M4V ": "video/mp4",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
    b"3gp6": "video/3gpp",
    b"3g2a": "video/3gpp2",
    b"crx ": "image/x-canon-cr3",
}
_MP4_BRANDS = frozenset({b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"mmp4"})


def _sniff_ftyp(head: bytes) -> str | None:
    if head[4:8] != b"ftyp" or len(head) < 12:
        return None
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    brands = {major} | compatible
    if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and brands & _AVIF_BRANDS):
        return "image/avif"
    if major in _HEIC_BRANDS or (major in _HEIF_BRANDS and brands & _HEIC_BRANDS):
        return "image/heic"
    if major in _HEIF_BRANDS:
        return "image/heif"
    if major in _FTYP_BRANDS:
        return _FTYP_BRANDS[major]
    if major in _MP4_BRANDS or brands & _MP4_BRANDS:
        return "video/mp4"
    return None


def _sniff_mpeg_audio(head: bytes) -> str | None:
    """An MPEG audio frame header (MP3) or an ADTS header (AAC) at the start."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0 or head[1] == 0xFE:
        return None  # 0xFF 0xFE is the UTF-16 little-endian byte order mark, not a frame
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, sample_rate = head[2] >> 4, (head[2] >> 2) & 0b11
    if layer == 0:  # ADTS: the sync word is 12 bits, so the version bit must also be set
        return "audio/aac" if head[1] & 0xF6 == 0xF0 else None
    if version == 0b01 or bitrate == 0b1111 or sample_rate == 0b11:
        return None  # reserved values: not a frame header
    return "audio/mpeg"


def _sniff_short_magic(head: bytes) -> str | None:
    """Signatures of two or three letters, confirmed by what follows so plain text cannot match."""
    if head.startswith(b"ID3") and head[3:4] in (b"\x02", b"\x03", b"\x04"):
        return "audio/mpeg"
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "application/x-bzip2"
    if head.startswith(b"MZ") and b"\x00" in head[2:64]:  # a DOS/PE header is full of zero bytes
        return OCTET_STREAM
    return None


def _sniff_binary(head: bytes) -> str | None:
    for magic, media_type in _SIGNATURES:
        if head.startswith(magic):
            return media_type
    if short := _sniff_short_magic(head):
        return short
    if head[:4] == b"RIFF" and (form := _RIFF_FORMS.get(head[8:12])):
        return form
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: the DocType element names the flavour
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"OggS"):
        return "video/ogg" if b"\x80theora" in head[:64] else "audio/ogg"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return "image/vnd.microsoft.icon"
    # "BM" alone would catch text: the reserved words must be zero and the DIB header size known.
    if head.startswith(b"BM") and head[6:10] == b"\x00" * 4 and int.from_bytes(head[14:18], "little") in _DIB_SIZES:
        return "image/bmp"
    if head[257:262] == b"ustar":
        return "application/x-tar"
    return _sniff_ftyp(head) or _sniff_mpeg_audio(head)


# ---------------------------------------------------------------------------------------------- markup and text

# WHATWG MIME Sniffing §7.1 "scriptable" patterns: a tag name followed by a space or ">".
_HTML_TAGS = (
    "!doctype html",
    "html",
    "head",
    "script",
    "iframe",
    "h1",
    "div",
    "font",
    "table",
    "a",
    "style",
    "title",
    "b",
    "body",
    "br",
    "p",
)
_HTML_START = re.compile(rf"<(?:{'|'.join(re.escape(tag) for tag in _HTML_TAGS)})[\s/>]", re.IGNORECASE)
_WHITESPACE = "\t\n\x0c\r "
# Skips comments, processing instructions and a doctype to reach the root element's name.
_PROLOG_ITEM = re.compile(r"\s*(?:<!--.*?-->|<\?.*?\?>|<!doctype[^>]*>)", re.IGNORECASE | re.DOTALL)
_ROOT_ELEMENT = re.compile(r"\s*<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")
_MARKUP_WINDOW = 4096


def _decode_head(head: bytes) -> str | None:
    """The head as text if it has a Unicode BOM or is UTF-8 (a cut final character allowed)."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, errors="ignore")
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None


def _root_element(text: str) -> str | None:
    index = 0
    while match := _PROLOG_ITEM.match(text, index):
        index = match.end()
    root = _ROOT_ELEMENT.match(text, index)
    return root.group(1).lower() if root else None


def _sniff_markup(text: str, extension_type: str | None) -> str | None:
    text = text[:_MARKUP_WINDOW].lstrip(_WHITESPACE + "\ufeff")
    lowered = text.lower()
    root = _root_element(text)
    if root == "svg" or lowered.startswith("<!doctype svg"):
        return "image/svg+xml"
    if lowered.startswith("<?xml"):
        if root == "html" or "<!doctype html" in lowered:
            return "application/xhtml+xml"
        if extension_type and extension_type.endswith(("+xml", "/xml")):
            return extension_type
        return "application/xml"
    if _HTML_START.match(text) or lowered.startswith("<!--"):
        return "text/html"
    return None


# No NULs and no C0 controls other than the usual whitespace and ESC (ANSI colours in logs).
_BINARY_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def _looks_like_text(text: str) -> bool:
    # One regex search in C instead of a Python loop over every character (4 KiB per upload).
    return _BINARY_CONTROL.search(text) is None


def _is_textual(media_type: str) -> bool:
    return (
        media_type.startswith("text/")
        or media_type.endswith(("+json", "+xml", "/json", "/xml", "/javascript", "/ecmascript"))
        or media_type in {"application/toml", "application/yaml", "application/x-sh", "application/sql"}
    )


def sniff_media_type(head: bytes, filename: str) -> str:
    """The media type of a file from its first bytes (512 or more is best) and its name.

    Content first: binary signatures, then markup (HTML, SVG, XML), then text. The name decides
    only between ZIP-based formats and between text formats, or when the bytes say nothing.
    """
    extension_type = type_from_extension(filename)
    if head.startswith(_ZIP_MAGIC):
        return (
            _EXTENSION_TYPES[extension] if (extension := _extension(filename)) in _ZIP_CONTAINERS else "application/zip"
        )
    if detected := _sniff_binary(head):
        return detected
    text = _decode_head(head)
    if text:
        if markup := _sniff_markup(text, extension_type):
            return markup
        if _looks_like_text(text):
            return extension_type if extension_type and _is_textual(extension_type) else "text/plain"
    return extension_type or OCTET_STREAM


def media_type_allows(pattern: str, media_type: str) -> bool:
    """Whether ``media_type`` (parameters ignored, case-insensitive) fits ``type/subtype`` or ``type/*``."""
    essence = media_type.split(";", 1)[0].strip().lower()
    wanted = pattern.strip().lower()
    if wanted.endswith("/*"):
        return essence.startswith(wanted[:-1]) and len(essence) > len(wanted) - 1
    return essence == wanted


# The types whose content gets image facts (size, capture time, placeholder): what ``stowage.images``
# decodes. Anything else is never scheduled for them.
IMAGE_FACT_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/avif", "image/heic", "image/heif"}
)


def has_image_facts(media_type: str | None) -> bool:
    """Whether content of this (sniffed, stored) type gets image facts."""
    return media_type in IMAGE_FACT_TYPES
