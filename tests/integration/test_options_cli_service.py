"""One ``key=value`` grammar (:mod:`anonlens.options`) for the CLI and the service: the same pair text
gives the same result on both, values typed by the registry entry they are for, malformed pairs one
line everywhere, and the service's scope list and margin bound taken from the library."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens.cli.main import app as cli_app
from anonlens.errors import AnonlensError, OptionError
from anonlens.options import parse_options
from anonlens.pipeline import MAX_MARGIN, SCOPES, AnonymizeConfig, parse_scope

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from anonlens.service import ServiceSettings, create_app  # noqa: E402

from tests.helpers import encode, noise  # noqa: E402

runner = CliRunner()
RED = [255, 0, 0]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServiceSettings(preload=False, allowed_hosts=("testserver",)))) as c:
        yield c


# ------------------------------------------------------------------------- one grammar


def test_a_red_mask_from_the_same_pair_text_on_the_cli_and_in_the_service(tmp_path, client):
    img = noise(48, 64)
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    result = runner.invoke(cli_app, ["anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--scope", "image",
                                     "--operator", "mask", "-p", "color=[255,0,0]", "--no-verify"])
    assert result.exit_code == 0, result.output
    cli_pixels = np.asarray(Image.open(tmp_path / "out" / "a.png").convert("RGB"))

    r = client.post("/anonymize", files={"file": ("a.png", encode(img), "image/png")},
                    data={"scope": "image", "operator": "mask", "operator_option": "color=[255,0,0]", "verify": "false",
                          "check": "false"})
    assert r.status_code == 200, r.text
    service_pixels = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))

    for pixels in (cli_pixels, service_pixels):
        assert pixels.shape == img.shape
        assert (pixels.reshape(-1, 3) == RED).all()


# --------------------------------------------------------------------- typed by target


def test_the_service_types_options_by_the_registry_entry(client):
    img = noise(48, 64)
    r = client.post("/anonymize", files={"file": ("a.png", encode(img), "image/png")},
                    data={"operator": "blur", "operator_option": "strength=abc", "check": "false"})
    assert r.status_code == 422 and r.json()["error"] == "operator 'blur': option strength='abc' is not valid: must be a finite number"
    r = client.post("/anonymize", files={"file": ("a.png", encode(img), "image/png")},
                    data={"scope": "image", "operator": "pixelate", "operator_option": "blocks=007", "verify": "false",
                          "check": "false", "response": "json"})
    assert r.status_code == 200, r.text
    blocks = r.json()["record"]["operator"]["options"]["blocks"]
    assert blocks == 7 and type(blocks) is int  # not JSON ("007"), but an integer option: read as one


# ------------------------------------------------------------------------ malformed pairs


@pytest.mark.parametrize("pairs,needle", [
    (["threshold"], "detector option 'threshold' must look like key=value"),
    (["=0.5"], "detector option '=0.5' must look like key=value"),
    ([" =0.5"], "must look like key=value"),
    (["threshold=0.3", "threshold=0.5"], "detector option 'threshold' is given twice ('threshold=0.3' and 'threshold=0.5'); keep one"),
    (["max-side=64", "max_side=96"], "detector option 'max_side' is given twice"),
    (["a\nb"], "must look like key=value"),
])
def test_malformed_pairs_are_one_line_everywhere(tmp_path, client, pairs, needle):
    with pytest.raises(OptionError) as info:
        parse_options(pairs, "detector")
    assert needle in str(info.value) and "\n" not in str(info.value)

    Image.fromarray(noise(48, 64)).save(tmp_path / "a.png")
    args = [x for p in pairs for x in ("-d", p)]
    result = runner.invoke(cli_app, ["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-q", *args])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.stderr

    r = client.post("/anonymize", files={"file": ("a.png", encode(noise(48, 64)), "image/png")}, data={"detector_option": pairs})
    assert r.status_code == 422 and needle in r.json()["error"] and "\n" not in r.json()["error"], r.text


# --------------------------------------------------------------- scope and margin: the library's


def test_the_service_lists_the_library_scopes_and_each_is_accepted(client):
    assert client.get("/options").json()["scopes"] == list(SCOPES)
    for scope in SCOPES:
        assert AnonymizeConfig(scope=scope).scope == ",".join(parse_scope(scope))
    assert parse_scope("TEXT,face") == ("face", "text") and AnonymizeConfig(scope="all").has_text
    with pytest.raises(AnonlensError, match="scope must be one of"):
        parse_scope("faces")


def test_the_service_margin_bound_is_the_library_bound(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/anonymize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    if "$ref" in body:
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    margin = body["properties"]["margin"]
    bounds = [s.get("maximum") for s in margin.get("anyOf", [margin]) if "maximum" in s]
    assert bounds == [MAX_MARGIN]
    AnonymizeConfig(margin=MAX_MARGIN)
    with pytest.raises(AnonlensError, match=f"between 0 and {MAX_MARGIN:g}"):
        AnonymizeConfig(margin=MAX_MARGIN + 0.01)

    img = noise(48, 64)
    ok = client.post("/anonymize", files={"file": ("a.png", encode(img), "image/png")},
                     data={"scope": "image", "operator": "mask", "margin": str(MAX_MARGIN), "verify": "false", "check": "false"})
    assert ok.status_code == 200, ok.text
    over = client.post("/anonymize", files={"file": ("a.png", encode(img), "image/png")},
                       data={"scope": "image", "operator": "mask", "margin": str(MAX_MARGIN + 0.01), "check": "false"})
    assert over.status_code == 422 and "margin" in over.json()["error"]
