"""Defaults de-identify: dlib's face-identity model no longer matches the anonymized face.

The check uses the strongest measurement available: the descriptor of the anonymized image taken
at the original face's exact landmarks (an attacker who knows where the face was), and any face
dlib can still find near that position. dlib calls two faces the same person below 0.6.
"""

import cv2
import numpy as np
import pytest

import anonlens
from anonlens.identity import DLIB_MATCH_THRESHOLD, DlibFaceEmbedder, identity_distance

from tests.helpers import iou


@pytest.fixture(scope="module")
def embedder():
    return DlibFaceEmbedder()


def test_identity_model_recognises_the_same_face(embedder, astronaut):
    ref = embedder.embed(astronaut)
    flipped = embedder.embed(np.ascontiguousarray(astronaut[:, ::-1]))
    shifted = embedder.embed(np.ascontiguousarray(np.roll(astronaut, (13, -21), axis=(0, 1))))
    buf = cv2.imencode(".jpg", astronaut, [cv2.IMWRITE_JPEG_QUALITY, 40])[1]
    recompressed = embedder.embed(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
    for other in (flipped, shifted, recompressed):
        assert identity_distance(ref.vector, other.vector) < 0.4


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])  # face about 30, 100 and 250 px wide
@pytest.mark.parametrize("operator", anonlens.list_operators())
@pytest.mark.slow
def test_default_output_is_not_matched_to_the_original(embedder, astronaut, operator, scale, operator_options):
    image = astronaut if scale == 1.0 else cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    big = image if scale >= 1 else cv2.resize(image, (512, 512), interpolation=cv2.INTER_CUBIC)
    ref = embedder.embed(big)
    assert ref is not None
    opts = operator_options(operator)  # agan: random weights (no trained A-GAN exists offline)
    result = anonlens.anonymize(image, operator=anonlens.create_operator(operator, **opts) if opts else operator)
    assert result.action == "anonymized" and len(result.regions) >= 1
    anon_big = result.image if scale >= 1 else cv2.resize(result.image, (512, 512), interpolation=cv2.INTER_CUBIC)
    at_known_position = embedder.embed_at(anon_big, ref)
    assert identity_distance(ref.vector, at_known_position.vector) >= DLIB_MATCH_THRESHOLD
    for face in embedder.embed_all(anon_big):
        if iou(face.box, ref.box) > 0.3:
            assert identity_distance(ref.vector, face.vector) >= DLIB_MATCH_THRESHOLD
