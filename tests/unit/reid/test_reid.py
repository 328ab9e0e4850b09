"""anonlens.reid: is the region a face, where and how turned, which attackers, and the rank-1 decision."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from anonlens.errors import AnonlensError, UnknownNameError
from anonlens.identity import face_embedder
from anonlens.reid import (ATTACKERS, NOT_A_FACE, UNMEASURABLE_POSE, DlibAttacker, FaceJudgement, Gallery,
                           create_attacker, default_attacker, featureless_chips, judge_face, judge_image, locate_face,
                           rank1_reidentified, tau_reidentified)
from anonlens.reid.attackers import arcface_transform, cosine_distance, euclidean
from anonlens.reid.measurable import WEAK_REGION_MIN_DLIB_SCORE

#: CenterFace's box of the astronaut's face (score 0.93)
FACE = (181.5, 58.2, 269.9, 177.8)
#: the mission patch on her suit, which dlib's HOG detector takes for a face (score 0.02 in this view)
PATCH = (110.0, 320.0, 230.0, 440.0)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def embedder():
    return face_embedder(upsample=1)


def _dist(a, b):
    return np.linalg.norm(np.asarray(b, float) - np.asarray(a, float), axis=-1)


class _Synthetic:
    """An attacker on given descriptors (Euclidean), for the decision alone."""

    name, tau, same_face = "synthetic", 0.6, 0.0

    def distance(self, a, b):
        return euclidean(a, b)


# --- the decision on synthetic embeddings ---------------------------------------------------------

def test_rank1_against_a_small_gallery_equals_a_hand_computation():
    anon, orig = np.array([0.0, 0.0]), np.array([0.3, 0.4])  # own distance 0.5
    gallery = np.array([[0.6, 0.0], [0.0, -0.7], [0.5, 0.5]])  # 0.6, 0.7, 0.7071
    assert rank1_reidentified(anon, orig, gallery, _dist) == (True, 1, pytest.approx(0.1))
    closer = np.vstack([gallery, [[0.1, 0.2]], [[-0.4, 0.0]]])  # 0.2236, 0.4: two impostors nearer than the original
    reid, rank, margin = rank1_reidentified(anon, orig, closer, _dist)
    assert (reid, rank) == (False, 3) and margin == pytest.approx(np.hypot(0.1, 0.2) - 0.5)
    tie = np.vstack([gallery, [[0.0, 0.5]]])  # exactly as near as the original: not re-identified
    assert rank1_reidentified(anon, orig, tie, _dist)[:2] == (False, 2)
    assert rank1_reidentified(anon, orig, np.zeros((0, 2)), _dist) == (True, 1, float("inf"))


def test_tau_and_the_criteria_of_judge_face(astronaut, embedder):
    loc = locate_face(astronaut, FACE, embedder=embedder)
    anon, orig = np.array([0.0, 0.0]), np.array([0.3, 0.4])  # 0.5: below tau 0.6, but not rank-1 here
    impostors = np.array([[0.2, 0.0]])
    rank1 = judge_face(attacker=_Synthetic(), location=loc, detector_score=0.9, d_orig=orig, d_anon=anon, impostors=impostors)
    tau = judge_face(attacker=_Synthetic(), location=loc, detector_score=0.9, d_orig=orig, d_anon=anon, impostors=impostors,
                     criterion="tau")
    both = judge_face(attacker=_Synthetic(), location=loc, detector_score=0.9, d_orig=orig, d_anon=anon, impostors=impostors,
                      criterion="both")
    assert (rank1.reidentified, rank1.rank, rank1.tau_match) == (False, 2, True)
    assert rank1.distance == pytest.approx(0.5) and rank1.nearest_impostor_distance == pytest.approx(0.2)
    assert tau.reidentified and both.reidentified and tau_reidentified(0.5, 0.6) and not tau_reidentified(0.6, 0.6)
    alone = judge_face(attacker=_Synthetic(), location=loc, detector_score=0.9, d_orig=orig, d_anon=anon)
    assert (alone.criterion, alone.rank1, alone.reidentified) == ("tau (no impostors)", None, True)
    # featureless references count as impostors for rank-1
    flat = judge_face(attacker=_Synthetic(), location=loc, detector_score=0.9, d_orig=orig, d_anon=anon,
                      impostors=np.array([[5.0, 5.0]]), featureless=np.array([[0.0, 0.1]]))
    assert (flat.reidentified, flat.rank, flat.nearest_featureless_distance) == (False, 2, pytest.approx(0.1))
    with pytest.raises(ValueError, match="criterion"):
        judge_face(attacker=_Synthetic(), location=loc, detector_score=0.9, d_orig=orig, d_anon=anon, criterion="any")


def test_a_region_without_a_location_is_never_reidentified():
    weak = judge_face(attacker=_Synthetic(), location=None, detector_score=0.3)
    strong = judge_face(attacker=_Synthetic(), location=None, detector_score=0.8)
    assert (weak.test, weak.reidentified, weak.distance) == (NOT_A_FACE, False, None)
    assert (strong.test, strong.reidentified) == (UNMEASURABLE_POSE, False)


def test_featureless_chips():
    chips = [np.full((4, 4, 3), [10, 20, 30], np.uint8), np.arange(48, dtype=np.uint8).reshape(4, 4, 3)]
    flats = featureless_chips(chips)
    assert len(flats) == 5 and all(f.shape == (4, 4, 3) and f.dtype == np.uint8 for f in flats)
    assert all((f == f[0, 0]).all() for f in flats)  # each chip one colour
    assert [f[0, 0].tolist() for f in flats] == [[0] * 3, [128] * 3, [255] * 3, [10, 20, 30], [22, 24, 24]]  # means 22.5, 23.5, 24.5
    assert featureless_chips([]) == []


# --- the gallery ---------------------------------------------------------------------------------

def test_the_builtin_gallery_holds_real_faces_with_their_licences():
    g = Gallery.builtin()
    rows = g.of("dlib")
    assert rows.shape == (25, 128) and np.all(np.isfinite(rows))
    assert min(_dist(rows[i], np.delete(rows, i, 0)).min() for i in range(len(rows))) > 0.3  # 25 different people
    assert any("MIT" in p for p in g.provenance) and any("Pexels" in p for p in g.provenance)
    assert g.of("onnx:anything").size == 0


def test_impostors_leave_out_the_same_face():
    g = Gallery.from_release({"dlib": [[0.0, 0.0], [0.05, 0.0], [1.0, 0.0]]}) + Gallery({"dlib": [[0.0, 2.0]]})
    kept = g.impostors("dlib", np.array([0.0, 0.0]), euclidean, same_face=0.2)
    assert kept.tolist() == [[1.0, 0.0], [0.0, 2.0]]
    with pytest.raises(ValueError, match="cannot be merged"):
        Gallery({"dlib": np.zeros((1, 2))}) + Gallery({"dlib": np.zeros((1, 3))})


# --- is it a face, where, how turned ---------------------------------------------------------------

def _skin_blob(score_box=(60, 60, 140, 140)) -> np.ndarray:
    """A knee-like chip: smooth skin-tone shading around a round bump, fine noise, no features."""
    yy, xx = np.mgrid[0:200, 0:200].astype(float)
    bump = np.exp(-(((xx - 100) / 45) ** 2 + ((yy - 100) / 55) ** 2))
    tone = np.array([205.0, 150.0, 125.0])
    img = tone * (0.7 + 0.35 * bump[..., None]) + np.random.default_rng(0).normal(0, 3, (200, 200, 3))
    return np.clip(ndimage.gaussian_filter(img, (1.5, 1.5, 0)), 0, 255).astype(np.uint8)


def test_a_knee_like_chip_is_not_a_face(embedder):
    knee = _skin_blob()
    box = (60, 60, 140, 140)
    assert locate_face(knee, box, embedder=embedder) is None
    weak, confident = judge_image(knee, np.zeros_like(knee), [box, box], [0.3, 0.9], embedder=embedder)
    assert (weak.test, weak.reidentified) == (NOT_A_FACE, False)
    assert (confident.test, confident.reidentified) == (UNMEASURABLE_POSE, False)


def test_a_weak_region_needs_a_confident_dlib_face(astronaut, embedder):
    found = locate_face(astronaut, PATCH, embedder=embedder)
    assert found is not None and found.score < WEAK_REGION_MIN_DLIB_SCORE  # dlib calls the patch a face, weakly
    (weak,) = judge_image(astronaut, np.zeros_like(astronaut), [PATCH], [0.3], embedder=embedder)
    assert (weak.test, weak.reidentified) == (NOT_A_FACE, False)


@pytest.mark.parametrize("turns, orientation", [(1, 270), (3, 90), (2, 180)])
def test_a_rotated_face_is_located_and_aligned(astronaut, embedder, turns, orientation):
    upright = locate_face(astronaut, FACE, embedder=embedder)
    assert upright is not None and upright.orientation == 0
    turned = np.ascontiguousarray(np.rot90(astronaut, turns))
    h, w = astronaut.shape[:2]
    x1, y1, x2, y2 = FACE
    box = {1: (y1, w - x2, y2, w - x1), 2: (w - x2, h - y2, w - x1, h - y1), 3: (h - y2, x1, h - y1, x2)}[turns]
    loc = locate_face(turned, box, embedder=embedder)
    assert loc is not None and loc.orientation == orientation and loc.iou > 0.5
    attacker = default_attacker()
    d = attacker.describe([attacker.chip(astronaut, upright), attacker.chip(turned, loc)])
    assert attacker.distance(d[0], d[1]) < 0.4
    (judged,) = judge_image(turned, turned, [box], [0.9])
    assert judged.test == "measured by dlib" and judged.orientation == orientation and judged.reidentified


# --- the astronaut: safe and unsafe outputs ----------------------------------------------------------

def test_mask_and_black_are_not_reidentified_blur_and_original_are(astronaut):
    x1, y1, x2, y2 = (int(round(v)) for v in FACE)
    masked = astronaut.copy()
    masked[y1:y2, x1:x2] = 0
    blurred = np.clip(ndimage.gaussian_filter(astronaut.astype(float), (1, 1, 0)), 0, 255).astype(np.uint8)
    verdicts = {name: judge_image(astronaut, out, [FACE], [0.93])[0]
                for name, out in {"original": astronaut, "blur1": blurred, "mask": masked, "black": np.zeros_like(astronaut)}.items()}
    for v in verdicts.values():
        assert v.test == "measured by dlib" and v.attacker == "dlib" and v.impostors == 25
    assert verdicts["original"].reidentified and verdicts["original"].distance == pytest.approx(0, abs=1e-6)
    assert verdicts["blur1"].reidentified and verdicts["blur1"].distance < 0.3
    assert not verdicts["mask"].reidentified and not verdicts["black"].reidentified
    assert verdicts["black"].nearest_featureless_distance == pytest.approx(0, abs=1e-6)
    record = verdicts["mask"].to_dict()
    assert record["reidentified"] is False and record["criterion"] == "rank1" and record["rank"] > 1


def test_a_release_face_found_twice_is_not_its_own_impostor(astronaut):
    pair = np.concatenate([astronaut, astronaut], axis=1)
    second = (FACE[0] + 512, FACE[1], FACE[2] + 512, FACE[3])
    judged = judge_image(pair, pair, [FACE, second], [0.93, 0.93])
    assert [j.reidentified for j in judged] == [True, True]
    assert [j.impostors for j in judged] == [25, 25]  # the other copy (distance 0) is the same face: left out


# --- the attackers -----------------------------------------------------------------------------------

def test_the_attacker_registry():
    assert ATTACKERS.names() == ["dlib", "onnx"]
    dlib = create_attacker("dlib", tau=0.5)
    assert isinstance(dlib, DlibAttacker) and dlib.tau == 0.5 and dlib.name == "dlib"
    with pytest.raises(UnknownNameError, match="Did you mean 'dlib'"):
        create_attacker("dlip")
    with pytest.raises(AnonlensError, match="out of range"):
        create_attacker("dlib", tau=-1)


def test_arcface_alignment_puts_the_eyes_on_the_template():
    pts = np.array([[80, 52], [74, 52], [38, 52], [44, 52], [56, 72]], float)  # dlib's order: one eye, the other, nose
    m = arcface_transform(pts)
    left, right, nose = m @ [41, 52, 1], m @ [77, 52, 1], m @ [56, 72, 1]
    assert np.allclose(left, [38.29, 51.70], atol=1.5) and np.allclose(right, [73.53, 51.50], atol=1.5)
    assert np.allclose(nose, [56.03, 71.74], atol=2.0)
    assert cosine_distance(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(1.0)


def _export_onnx(path, size: int = 112) -> str:
    """A tiny random-weight recogniser (N x 3 x size x size -> N x 128) written with the onnx package:
    conv 5x5 stride 4, ReLU, global average pool, a 128-wide linear layer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 5, 5)).astype(np.float32), "w"),
               numpy_helper.from_array(np.zeros(8, np.float32), "b"),
               numpy_helper.from_array(rng.normal(0, 0.3, (8, 128)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[4, 4]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "tiny-recogniser", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 128])], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return _export_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_the_onnx_attacker_with_random_weights_runs_and_is_recorded(astronaut, embedder, tiny_onnx):
    onnx = create_attacker("onnx", model=tiny_onnx, tau=0.3)
    assert onnx.name == "onnx:tiny" and onnx.tau == 0.3
    loc = locate_face(astronaut, FACE, embedder=embedder)
    chips = [onnx.chip(astronaut, loc), onnx.chip(np.zeros_like(astronaut), loc), onnx.chip(astronaut, loc)]
    assert chips[0].shape == (112, 112, 3) and chips[0].std() > 20
    desc = onnx.describe(chips)
    assert desc.shape == (3, 128) and np.allclose(np.linalg.norm(desc, axis=1), 1)
    assert onnx.distance(desc[0], desc[2]) == pytest.approx(0, abs=1e-6) and onnx.distance(desc[0], desc[1]) > 1e-3
    (judged,) = judge_image(astronaut, astronaut, [FACE], [0.93], attackers=[default_attacker(), onnx])
    assert judged.attacker == "dlib" and judged.reidentified
    dlib_j, onnx_j = judged.by_attacker
    assert (onnx_j.test, onnx_j.attacker, onnx_j.criterion) == ("measured by onnx:tiny", "onnx:tiny", "tau (no impostors)")
    assert onnx_j.distance == pytest.approx(0, abs=1e-6) and onnx_j.reidentified
    assert judged.to_dict()["by_attacker"][1]["attacker"] == "onnx:tiny"
    # a face fails when any attacker re-identifies it, and the record names that attacker: a black
    # image is far from her for dlib (0.78 > tau), while an onnx attacker with tau 1.99 matches anything
    lax = create_attacker("onnx", model=tiny_onnx, tau=1.99)
    (black,) = judge_image(astronaut, np.zeros_like(astronaut), [FACE], [0.93], attackers=[default_attacker(), lax],
                           criterion="tau")
    assert black.reidentified and black.attacker == "onnx:tiny" and black.test == "measured by onnx:tiny"
    assert [j.reidentified for j in black.by_attacker] == [False, True]


def test_the_onnx_attacker_explains_a_missing_file_and_a_wrong_shape(tmp_path):
    with pytest.raises(AnonlensError, match="model file not found") as err:
        create_attacker("onnx", model=str(tmp_path / "missing.onnx"))
    assert "\n" not in str(err.value)
    wrong = _export_onnx(tmp_path / "wrong.onnx", size=64)
    with pytest.raises(AnonlensError, match=r"expected \(N, 3, 112, 112\)") as err:
        create_attacker("onnx", model=wrong)
    assert "\n" not in str(err.value) and "64" in str(err.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(AnonlensError, match="not a readable ONNX model"):
        create_attacker("onnx", model=str(garbage))


def test_judge_image_checks_its_inputs(astronaut):
    with pytest.raises(ValueError, match="same size"):
        judge_image(astronaut, astronaut[:100], [FACE], [0.9])
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        judge_image(astronaut, astronaut, [FACE], [0.9, 0.5])
    assert judge_image(astronaut, astronaut, [], []) == []
    assert isinstance(judge_image(astronaut, astronaut, [FACE])[0], FaceJudgement)
