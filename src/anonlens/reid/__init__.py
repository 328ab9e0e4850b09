"""Is this person still recognised? Re-identification by face recognisers, judged against impostors.

- :mod:`~anonlens.reid.measurable`: is the region a face a recogniser can judge, where, at which
  of the four 90-degree orientations (:func:`locate_face`, :func:`identity_test`);
- :mod:`~anonlens.reid.attackers`: the recognisers (:data:`ATTACKERS`: ``dlib``, ``onnx``);
- :mod:`~anonlens.reid.gallery`: impostor descriptors (the release's other faces, a built-in set);
- :mod:`~anonlens.reid.decide`: rank-1 and fixed-threshold decisions, per face and per image
  (:func:`judge_image`).
"""

from .attackers import ATTACKERS, Attacker, DlibAttacker, OnnxAttacker, create_attacker, default_attacker, list_attackers
from .decide import CRITERIA, FaceJudgement, featureless_chips, judge_face, judge_image, locate_regions, rank1_reidentified, tau_reidentified
from .gallery import Gallery
from .measurable import NOT_A_FACE, UNMEASURABLE_POSE, FaceLocation, identity_test, locate_face, measured_by, view_of

__all__ = ["ATTACKERS", "Attacker", "DlibAttacker", "OnnxAttacker", "create_attacker", "default_attacker", "list_attackers", "CRITERIA",
           "FaceJudgement", "judge_face", "judge_image", "locate_regions", "featureless_chips", "rank1_reidentified", "tau_reidentified",
           "Gallery", "NOT_A_FACE", "UNMEASURABLE_POSE", "FaceLocation", "identity_test", "locate_face", "measured_by",
           "view_of"]
