"""EDI-Anon: explainability-driven iterative anonymization.

An identity oracle (:mod:`.oracles`) says whether a face is still recognised; a saliency method
(:mod:`.saliency`) says which pixels give it away; the loop (:mod:`.loop`) swaps the operator's
output into only those pixels until the oracle no longer recognises the person.

>>> from anonlens.edi import ORACLES, SALIENCY
>>> ORACLES.names(), SALIENCY.names()
(['classifier', 'dlib'], ['gradcam', 'gradient', 'occlusion', 'rise'])
"""

from .loop import EDIConfig, EDIProcess, EDIResult, EDISetResult, edi_anonymize, edi_set, reid_curve, select_elements, utility_record
from .oracles import ORACLES, ClassifierOracle, DlibOracle, IdentityOracle, Measure, create_oracle
from .saliency import SALIENCY, saliency_map

__all__ = [
    "EDIConfig", "EDIProcess", "EDIResult", "EDISetResult", "edi_anonymize", "edi_set", "reid_curve", "select_elements",
    "utility_record", "ORACLES", "ClassifierOracle", "DlibOracle", "IdentityOracle", "Measure", "create_oracle", "SALIENCY",
    "saliency_map",
]
