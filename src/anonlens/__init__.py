"""anonlens: anonymize people in images, then measure how anonymous the result is.

>>> import anonlens
>>> sorted(anonlens.list_operators())
['agan', 'blur', 'dp-pix', 'inpaint', 'mask', 'noise', 'pixelate']
"""

from ._version import __version__
from .privacy import keep_offline as _keep_offline

_keep_offline()  # before any detector imports OpenVINO: no telemetry (docs/install.md: "No network")

from .detectors import Detector, create_detector, list_detectors  # noqa: E402
from .errors import AnonlensError, ImageReadError, WeightsUnavailableError  # noqa: E402
from .operators import Operator, create_operator, list_operators  # noqa: E402
from .pipeline import AnonymizationResult, AnonymizeConfig, Anonymizer, anonymize  # noqa: E402
from .regions import Region, region_mask  # noqa: E402

__all__ = [
    "__version__",
    "AnonlensError",
    "AnonymizationResult",
    "AnonymizeConfig",
    "Anonymizer",
    "Detector",
    "ImageReadError",
    "Operator",
    "Region",
    "WeightsUnavailableError",
    "anonymize",
    "create_detector",
    "create_operator",
    "list_detectors",
    "list_operators",
    "region_mask",
]
