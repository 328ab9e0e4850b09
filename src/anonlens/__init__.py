"""anonlens: anonymize people in images, then measure how anonymous the result is.

>>> import anonlens
>>> sorted(anonlens.list_operators())
['agan', 'blur', 'dp-pix', 'inpaint', 'mask', 'noise', 'pixelate']
"""

from ._version import __version__
from .detectors import Detector, create_detector, list_detectors
from .errors import AnonlensError, ImageReadError, WeightsUnavailableError
from .operators import Operator, create_operator, list_operators
from .pipeline import AnonymizationResult, AnonymizeConfig, Anonymizer, anonymize
from .regions import Region, region_mask

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
