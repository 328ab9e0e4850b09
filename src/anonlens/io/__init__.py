"""Image and file input/output: decoding with validation, metadata-free encoding, atomic writes."""

from .files import InputFile, atomic_writer, discover_inputs, file_kind, is_within, read_regular_file, sha256_bytes, write_atomic
from .images import (
    DEFAULT_MAX_PIXELS,
    FORMAT_BY_SUFFIX,
    SUFFIX_BY_FORMAT,
    SUPPORTED_SUFFIXES,
    UNSUPPORTED_IMAGE_SUFFIXES,
    LoadedImage,
    decode_image,
    encode_image,
    max_input_bytes,
    read_image,
    sniff_format,
)
from .metadata import KEPT_EXIF_TAGS, container_segments, metadata_problems, metadata_segments

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "KEPT_EXIF_TAGS",
    "SUFFIX_BY_FORMAT",
    "file_kind",
    "max_input_bytes",
    "metadata_problems",
    "read_regular_file",
    "sniff_format",
    "FORMAT_BY_SUFFIX",
    "SUPPORTED_SUFFIXES",
    "UNSUPPORTED_IMAGE_SUFFIXES",
    "InputFile",
    "atomic_writer",
    "LoadedImage",
    "container_segments",
    "decode_image",
    "discover_inputs",
    "encode_image",
    "is_within",
    "metadata_segments",
    "read_image",
    "sha256_bytes",
    "write_atomic",
]
