"""Image and file input/output: decoding with validation, metadata-free encoding, atomic writes."""

from .files import InputFile, atomic_writer, discover_inputs, is_within, sha256_bytes, write_atomic
from .images import (
    DEFAULT_MAX_PIXELS,
    FORMAT_BY_SUFFIX,
    SUPPORTED_SUFFIXES,
    UNSUPPORTED_IMAGE_SUFFIXES,
    LoadedImage,
    decode_image,
    encode_image,
    read_image,
)
from .metadata import container_segments, metadata_segments

__all__ = [
    "DEFAULT_MAX_PIXELS",
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
