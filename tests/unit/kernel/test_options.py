"""One ``key=value`` grammar (:mod:`anonlens.options`): the library and the command line read the same
dict, and values are typed by the registry entry they are for. That the CLI and the service read it
the same way, and take the scope list and margin bound from the library:
``tests/integration/test_options_cli_service.py``."""

from __future__ import annotations

import pytest

from anonlens.cli import kit
from anonlens.detectors import DETECTORS
from anonlens.errors import OptionError
from anonlens.operators import OPERATORS
from anonlens.options import parse_options, parse_value

RED = [255, 0, 0]


# ------------------------------------------------------------------------- one grammar


@pytest.mark.parametrize("pairs,expected", [
    (["color=[255,0,0]"], {"color": RED}),
    (["strength=0.3", "sigma=2"], {"strength": 0.3, "sigma": 2}),
    (["multiscale=False", "small-text=TRUE"], {"multiscale": False, "small_text": True}),
    (["method=telea", "seed=null", "name=\"8\""], {"method": "telea", "seed": None, "name": "8"}),
    ([" max_side = 1280 "], {"max_side": 1280}),
])
def test_the_cli_and_the_library_read_the_same_dict(pairs, expected):
    assert parse_options(pairs, "operator") == expected
    assert kit.parse_options(pairs, "operator") == expected


def test_values_are_json_literals_else_text():
    assert parse_value("[1, 2.5]") == [1, 2.5] and parse_value("tRuE") is True and parse_value("null") is None
    assert parse_value("abc") == "abc" and parse_value("1e3") == 1000.0 and parse_value('{"a": 1}') == {"a": 1}
    assert parse_value("[" * 100_000) == "[" * 100_000  # too deep for the JSON reader: text, no RecursionError
    assert parse_value("9" * 5000) == "9" * 5000  # over Python's digit limit: text


# --------------------------------------------------------------------- typed by target


def test_a_string_option_given_a_number_keeps_the_text():
    assert parse_options(["model_path=123"], "detector") == {"model_path": 123}
    assert parse_options(["model_path=123"], "detector", target=DETECTORS.get("text")) == {"model_path": "123"}
    assert parse_options(["model_path=null"], "detector", target=DETECTORS.get("text")) == {"model_path": None}


def test_numbers_booleans_literals_and_lists_are_read_by_the_declared_type():
    pixelate, mask, inpaint = OPERATORS.get("pixelate"), OPERATORS.get("mask"), OPERATORS.get("inpaint")
    assert parse_options(["blocks=007", "block=+4"], "operator", target=pixelate) == {"blocks": 7, "block": 4}
    assert parse_options(["color=[255,0,0]"], "operator", target=mask) == {"color": RED}
    assert parse_options(["method=ns", "radius=.1"], "operator", target=inpaint) == {"method": "ns", "radius": 0.1}
    assert parse_options(["multiscale=false"], "detector", target=DETECTORS.get("centerface")) == {"multiscale": False}


def test_a_callable_target_types_by_its_signature():
    def make(*, name: str = "a", sigma: float = 1.0, steps=3):
        return name, sigma, steps

    assert parse_options(["name=1.5", "sigma=2", "steps=4"], "thing", target=make) == {"name": "1.5", "sigma": 2, "steps": 4}
    with pytest.raises(OptionError, match=r"^thing option steps='x' is not valid: must be an integer$"):
        parse_options(["steps=x"], "thing", target=make)


@pytest.mark.parametrize("kind,name,pair,message", [
    ("operator", "blur", "strength=abc", "operator 'blur': option strength='abc' is not valid: must be a finite number"),
    ("operator", "pixelate", "blocks=2.5", "operator 'pixelate': option blocks=2.5 is not valid: must be an integer"),
    ("operator", "mask", "color=[255,0]", "operator 'mask': option color=[255, 0] is not valid: must be a list of 3 integers"),
    ("operator", "inpaint", "method=fast", "operator 'inpaint': option method='fast' is not valid: must be one of 'telea', 'ns'"),
    ("detector", "centerface", "multiscale=maybe", "detector 'centerface': option multiscale='maybe' is not valid: must be true or false"),
])
def test_a_value_of_the_wrong_type_names_the_key_the_value_and_the_type(kind, name, pair, message):
    registry = {"operator": OPERATORS, "detector": DETECTORS}[kind]
    with pytest.raises(OptionError) as info:
        parse_options([pair], kind, target=registry.get(name))
    assert str(info.value) == message
    # the registry's own check says the same line for the same value
    value = parse_options([pair], kind)[pair.split("=")[0]]
    with pytest.raises(OptionError) as same:
        registry.check_options(name, {pair.split("=")[0]: value})
    assert str(same.value) == message
