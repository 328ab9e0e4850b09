"""Reading and writing image files safely.

Reading applies the EXIF orientation to the pixels, converts any colour mode to 8-bit RGB (keeping
alpha and grayscale to write them back), converts embedded ICC colour profiles to sRGB, and
refuses, with a one-line :class:`~anonlens.errors.ImageReadError` naming the file, anything it
cannot decode fully: zero-byte, truncated, corrupt, non-image, multi-frame, or more pixels than the
limit (checked from the header, before decoding).

Writing encodes from pixels only, so the output carries no metadata (no EXIF/GPS, XMP, IPTC,
maker notes, comments, text chunks) unless ``keep_metadata`` asks for EXIF, which is then cleaned
of GPS, maker notes and the embedded thumbnail (a thumbnail is an un-anonymized copy).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import ImageReadError, ImageWriteError

__all__ = [
    "LoadedImage",
    "read_image",
    "decode_image",
    "encode_image",
    "SUPPORTED_SUFFIXES",
    "UNSUPPORTED_IMAGE_SUFFIXES",
    "FORMAT_BY_SUFFIX",
    "DEFAULT_MAX_PIXELS",
]

DEFAULT_MAX_PIXELS = 100_000_000
FORMAT_BY_SUFFIX = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
SUPPORTED_SUFFIXES = frozenset(FORMAT_BY_SUFFIX)
#: image or photo types anonlens cannot anonymize: in an input folder they fail (a photo we cannot
#: process must not go unnoticed), unlike other files, which are listed as ignored
UNSUPPORTED_IMAGE_SUFFIXES = frozenset(
    ".heic .heif .avif .gif .jp2 .j2k .jxl .ico .psd .dng .cr2 .cr3 .nef .arw .orf .rw2 .raf .svg .eps .pdf".split()
)
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
_EXIF_GPS_IFD = 0x8825
_EXIF_SUB_IFD = 0x8769
_EXIF_MAKERNOTE = 0x927C
_EXIF_ORIENTATION = 0x0112
_SRGB = None

# Never let PIL silently decode a truncated file.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass
class LoadedImage:
    """A decoded image in the anonlens convention, plus what is needed to write it back."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None = None  # (H, W) uint8
    grayscale: bool = False
    format: str = "PNG"
    notes: list[str] = field(default_factory=list)
    exif: bytes | None = None  # cleaned EXIF (only kept when asked for)
    icc_profile: bytes | None = None
    jpeg_subsampling: int | None = None  # the source's chroma subsampling (0: 4:4:4, 1: 4:2:2, 2: 4:2:0)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


def _srgb():
    global _SRGB
    if _SRGB is None:
        _SRGB = ImageCms.createProfile("sRGB")
    return _SRGB


def _clean_exif(img: Image.Image) -> bytes | None:
    """EXIF without GPS, maker notes or thumbnail, orientation reset (pixels are already upright)."""
    exif = img.getexif()
    if not exif:
        return None
    clean = Image.Exif()
    for tag, value in exif.items():
        if tag in (_EXIF_GPS_IFD, _EXIF_SUB_IFD):
            continue
        clean[tag] = value
    clean[_EXIF_ORIENTATION] = 1
    sub = {tag: value for tag, value in exif.get_ifd(_EXIF_SUB_IFD).items() if tag != _EXIF_MAKERNOTE}
    if sub:
        clean[_EXIF_SUB_IFD] = sub
    return clean.tobytes()


def decode_image(
    data: bytes,
    *,
    name: str | os.PathLike | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    keep_metadata: bool = False,
) -> LoadedImage:
    """Decode image bytes into a :class:`LoadedImage` (see the module docstring)."""
    if len(data) == 0:
        raise ImageReadError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "PNG"
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageReadError(name, f"image has no pixels ({w}x{h})")
            if max_pixels is not None and w * h > max_pixels:
                raise ImageReadError(
                    name, f"{w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} (raise it with --max-pixels)"
                )
            if getattr(img, "n_frames", 1) > 1:
                raise ImageReadError(name, f"multi-frame {fmt} ({img.n_frames} frames) is not supported; split the frames first")
            img.load()
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(name, "not an image, or an unsupported format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(name, f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        problem = str(exc) or type(exc).__name__
        if "truncated" in problem.lower() or isinstance(exc, EOFError):
            problem = f"truncated or damaged file ({problem})"
        raise ImageReadError(name, f"cannot decode: {problem}") from None

    notes: list[str] = []
    subsampling = None
    if fmt == "JPEG" and img.mode in ("RGB", "YCbCr"):
        from PIL import JpegImagePlugin

        sampling = JpegImagePlugin.get_sampling(img)
        subsampling = sampling if sampling in (0, 1, 2) else None
    exif_bytes = _clean_exif(img) if keep_metadata else None
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation not in (1, None):
        img = ImageOps.exif_transpose(img)
        notes.append(f"EXIF orientation {orientation} applied to the pixels")

    icc = img.info.get("icc_profile")
    mode = img.mode
    grayscale = mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        top = 65535 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255
        arr8 = np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr8, "L")
        notes.append(f"{mode} ({'16' if top == 65535 else '32'}-bit) reduced to 8 bits")
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        top = 1.0 if hi <= 1.0 and lo >= 0.0 else 255.0
        img = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8), "L")
        notes.append("32-bit float image reduced to 8 bits")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA") if ("transparency" in img.info or mode == "PA") else img.convert("RGB")
        notes.append("palette image converted to RGB")
    elif mode == "CMYK":
        if icc and keep_metadata is False:
            try:
                img = ImageCms.profileToProfile(img, io.BytesIO(icc), _srgb(), outputMode="RGB")
                icc = None
            except (ImageCms.PyCMSError, OSError):
                img = img.convert("RGB")
        else:
            img = img.convert("RGB")
        notes.append("CMYK converted to RGB")
    elif mode not in ("RGB", "RGBA", "L", "LA", "1"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
        notes.append(f"{mode} converted to RGB")
    if img.mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA"):
        alpha = np.asarray(img.getchannel("A")).copy()
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    if icc and not keep_metadata and img.mode == "RGB":
        try:
            img = ImageCms.profileToProfile(img, io.BytesIO(icc), _srgb(), outputMode="RGB")
            notes.append("embedded colour profile converted to sRGB")
        except (ImageCms.PyCMSError, OSError):
            notes.append("embedded colour profile unreadable; pixels kept as they are")
        icc = None
    arr = np.asarray(img)
    rgb = np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr[:, :, :3])
    return LoadedImage(
        rgb=rgb,
        alpha=alpha,
        grayscale=grayscale,
        format=fmt,
        notes=notes,
        exif=exif_bytes,
        icc_profile=icc if keep_metadata else None,
        jpeg_subsampling=subsampling,
    )


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    keep_metadata: bool = False,
) -> LoadedImage:
    """Read ``path`` into a :class:`LoadedImage`; errors name the file."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    return decode_image(data, name=path, max_pixels=max_pixels, keep_metadata=keep_metadata)


def encode_image(
    loaded: LoadedImage,
    rgb: np.ndarray,
    *,
    format: str | None = None,
    quality: int = 95,
    keep_metadata: bool = False,
) -> bytes:
    """Encode ``rgb`` (the anonymized pixels of ``loaded``) in ``format`` and return the bytes.

    Grayscale and alpha of the source are restored. Nothing but pixels is written unless
    ``keep_metadata`` (then the cleaned EXIF and the ICC profile).
    """
    fmt = (format or loaded.format or "PNG").upper()
    if fmt == "MPO":
        fmt = "JPEG"
    if fmt not in set(FORMAT_BY_SUFFIX.values()):
        raise ImageWriteError(f"cannot write format {fmt}; use one of {sorted(set(FORMAT_BY_SUFFIX.values()))}")
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if loaded.grayscale:
        img = img.convert("L")
    if loaded.alpha is not None and fmt in _ALPHA_FORMATS:
        img.putalpha(Image.fromarray(loaded.alpha, "L"))
    params: dict = {}
    if fmt == "JPEG":
        # keep the source's chroma resolution (no point encoding colour detail it never had)
        sub = loaded.jpeg_subsampling if loaded.jpeg_subsampling is not None else (0 if quality >= 90 else 2)
        params.update(quality=int(quality), subsampling=sub, optimize=False)
    elif fmt == "WEBP":
        params.update(quality=int(quality))
    elif fmt == "PNG":
        params.update(compress_level=6)
    if keep_metadata:
        if loaded.exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
            params["exif"] = loaded.exif
        if loaded.icc_profile and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
            params["icc_profile"] = loaded.icc_profile
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt, **params)
    except (OSError, ValueError) as exc:
        raise ImageWriteError(f"cannot encode {fmt}: {exc}") from exc
    return buf.getvalue()
