"""Assessment metrics: a registry of named metrics with declared capabilities.

>>> from anonlens.metrics import METRICS, list_metrics
>>> list_metrics(level="pair", full_reference=True)[:3]
['identity', 'lpips', 'lpips-squeeze']
>>> METRICS.get("psnr").tags["more_private"]
'lower'
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .agan import AganRatesMetric
from .base import Metric, PairBatch
from .classic import MSE, PSNR, SSIM
from .detectability import FaceScore, PeopleKept, ResidualFace, UtilityOutside
from .group import FID, KID, GroupMetric
from .identity import IdentityRisk
from .learned import LearnedScore, SemSimDistance
from .lpips import LPIPS

__all__ = ["column_directions", "utility_columns", "Metric", "GroupMetric", "PairBatch", "METRICS", "create_metric", "list_metrics", "DEFAULT_METRICS"]

METRICS: Registry[Any] = Registry("metric", check_types=True)


def _add(name, factory, *, level="pair", offline=True, defaults=None, summary=None, extra=None):
    cls = factory
    METRICS.add(
        name,
        factory,
        summary=summary,
        defaults=defaults,
        level=level,
        full_reference=cls.full_reference,
        more_private=cls.more_private,
        offline=offline,
        extra=extra,
    )


_add("mse", MSE)
_add("psnr", PSNR)
_add("ssim", SSIM, summary="SSIM, Gaussian 11/1.5, standard K1=0.01, K2=0.03 (equals scikit-image).")
_add(
    "ssim-perceptanon",
    SSIM,
    defaults={"k1": 0.01**2, "k2": 0.03**2, "name": "ssim-perceptanon"},
    summary="SSIM with the PerceptAnon reference's squared constants K1=0.01**2, K2=0.03**2 (non-standard).",
)
_add("lpips", LPIPS, offline=False, summary="LPIPS, AlexNet backbone (needs torchvision's ImageNet weights).", extra="learn")
_add("lpips-vgg", LPIPS, offline=False, defaults={"net": "vgg"}, summary="LPIPS, VGG16 backbone.", extra="learn")
_add("lpips-squeeze", LPIPS, offline=False, defaults={"net": "squeeze"}, summary="LPIPS, SqueezeNet backbone.", extra="learn")
_add("identity", IdentityRisk, summary="Face-identity distance (dlib 128-d); re-identified below 0.6.")
_add("residual-face", ResidualFace, summary="Highest face-detector score left on the original's faces.")
_add("utility-outside", UtilityOutside, summary="PSNR/SSIM outside the original's faces (utility kept).")
_add("people-kept", PeopleKept, summary="Share of the original's people a person detector still finds (utility).")
_add("face-score", FaceScore, summary="No-reference: highest face-detector score in the anonymized image.")
_add("learned", LearnedScore, summary="A trained PerceptAnon HA1/HA2 checkpoint's score on the 1..10 scale (option checkpoint=).", extra="learn")
_add("semsim", SemSimDistance, summary="A trained SemSim model's embedding distance original vs anonymized (option checkpoint=).", extra="learn")
_add("fid", FID, level="group", offline=False, summary="Fréchet Inception distance per group (>= 2 images).", extra="learn")
_add("agan-rates", AganRatesMetric, level="group", summary="A-GAN's rates per group (value: share not anonymized; rank-1, shared identity) "
     "over person-crop embeddings, τ calibrated (option embedder=dlib-face|imagenet-mobilenet_v2|osnet_ain_x1_0).")
_add("kid", KID, level="group", offline=False, summary="Kernel Inception distance per group (>= subset_size images).", extra="learn")

#: what `anonlens score` computes when --metrics is not given (all offline)
DEFAULT_METRICS = ("mse", "psnr", "ssim", "identity", "residual-face", "utility-outside")


def column_directions() -> dict[str, str]:
    """Every per-pair table column a registered metric writes -> which direction means "more
    private" ("higher" or "lower"). Used to sign correlations; never guessed from names."""
    out: dict[str, str] = {}
    for entry in METRICS.entries():
        if entry.tags.get("level") != "pair":
            continue
        out.update(getattr(entry.factory, "column_directions", None) or {entry.name: entry.factory.more_private})
    return out


def utility_columns() -> set[str]:
    """Columns that measure utility kept (higher keeps more of the picture), not privacy."""
    out: set[str] = set()
    for entry in METRICS.entries():
        if getattr(entry.factory, "utility", False):
            out.update(getattr(entry.factory, "column_directions", None) or {entry.name: ""})
    return out


def create_metric(name: str, **options: Any):
    """Create the metric registered as ``name`` (see :func:`list_metrics`)."""
    return METRICS.create(name, **options)


def list_metrics(**tags: Any) -> list[str]:
    return METRICS.names(**tags)
