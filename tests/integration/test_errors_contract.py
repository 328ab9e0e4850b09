"""The errors contract (issue 30): every registered detector and operator option, given a value of
the wrong type or out of its declared range, is one line and exit 2 on the CLI (before any file is
written) and one line and HTTP 422 in the service; never a traceback."""

from __future__ import annotations

import math

import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.detectors import DETECTORS
from anonlens.operators import OPERATORS

from tests.helpers import encode, noise

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from anonlens.service import ServiceSettings, create_app  # noqa: E402

runner = CliRunner()


def _outside(rng) -> float:
    """A number just outside the declared range."""
    if math.isfinite(rng.low):
        return rng.low - 1 if rng.low_closed else rng.low
    return rng.high + 1 if rng.high_closed else rng.high


def _bad_values(registry, *, only_offline: bool) -> list[tuple[str, str, str, str]]:
    """(entry, key, value, why) for every numeric or boolean option: a word where a number or a
    switch belongs, and a number outside the declared range."""
    cases = []
    for entry in registry.entries():
        if only_offline and not entry.tags.get("offline", True):
            continue
        for key, default in entry.options().items():
            if isinstance(default, bool):
                cases.append((entry.name, key, "maybe", "wrong type"))
            elif isinstance(default, (int, float)) or key in entry.ranges:
                cases.append((entry.name, key, "not-a-number", "wrong type"))
            if key in entry.ranges:
                v = _outside(entry.ranges[key])
                cases.append((entry.name, key, str(int(v)) if float(v).is_integer() else str(v), "out of range"))
    return cases


DETECTOR_CASES = _bad_values(DETECTORS, only_offline=True)
OPERATOR_CASES = [c for c in _bad_values(OPERATORS, only_offline=False) if c[0] != "agan"]  # agan: its weights first


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "a.png"
    Image.fromarray(noise(48, 64)).save(path)
    return path


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServiceSettings(preload=False, allowed_hosts=("testserver",)))) as c:
        yield c


def _one_line_exit_2(result, out) -> None:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output and lines[0].startswith("error:"), result.output
    assert not out.exists() or not any(out.rglob("*.png"))


def test_the_cases_cover_every_option_with_a_range():
    assert len(DETECTOR_CASES) >= 20 and len(OPERATOR_CASES) >= 10
    assert {c[0] for c in DETECTOR_CASES} >= {"centerface", "ssd-person", "text", "hog-person", "dlib-hog"}
    assert {c[0] for c in OPERATOR_CASES} >= {"blur", "pixelate", "mask", "noise", "dp-pix"}


#: (the CLI's name option, its option flag, the service's name field, its option field)
FLAGS = {"detector": ("--detector", "-d", "detector", "detector_option"), "operator": ("--operator", "-p", "operator", "operator_option")}
CASES = [("detector", *c) for c in DETECTOR_CASES] + [("operator", *c) for c in OPERATOR_CASES]


@pytest.mark.parametrize("kind,name,key,value,why", CASES, ids=[f"{c[0]}:{c[1]}.{c[2]}:{c[4]}" for c in CASES])
def test_a_bad_option_is_one_line_on_the_cli_and_422_in_the_service(kind, name, key, value, why, photo, tmp_path, client):
    name_flag, option_flag, name_field, option_field = FLAGS[kind]
    out = tmp_path / "o"
    result = runner.invoke(app, ["anonymize", str(photo), "-o", str(out), "-q", name_flag, name, option_flag, f"{key}={value}"])
    _one_line_exit_2(result, out)
    assert key in result.output
    r = client.post("/anonymize", files={"file": ("a.png", encode(noise(48, 64)), "image/png")},
                    data={name_field: name, option_field: f"{key}={value}", "check": "false"})
    assert r.status_code == 422 and key in r.json()["error"] and "\n" not in r.json()["error"], r.text

from anonlens.metrics import METRICS  # noqa: E402

METRIC_CASES = _bad_values(METRICS, only_offline=True)


@pytest.mark.parametrize("name,key,value,why", METRIC_CASES, ids=[f"{c[0]}.{c[1]}:{c[3]}" for c in METRIC_CASES])
def test_a_bad_metric_option_is_one_line_on_the_cli(name, key, value, why, photo, tmp_path):
    out = tmp_path / "s"
    result = runner.invoke(app, ["score", "-a", str(photo.parent), "--original", str(photo.parent), "-o", str(out), "-q",
                                 "--metrics", name, "-m", f"{name}.{key}={value}"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output and key in lines[0], result.output
    assert not (out / "scores.csv").exists()
