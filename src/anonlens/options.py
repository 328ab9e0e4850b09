"""One ``key=value`` grammar for options, the same in the CLI (``-d``, ``-p``, ``-m``, ...) and the
service (``detector_option``, ``operator_option``).

A value is read as a JSON literal when it is one (numbers, lists, ``null``; ``true``/``false`` in
any case), else it is the text itself. Given a ``target`` (a registry :class:`~anonlens.registry.Entry`,
or a callable whose signature declares the option types), each value is then read by its option's
declared type: a string option keeps the text (``name=123`` is ``"123"``), a number option takes
any number Python reads (``+3``, ``.5``), and a value that fits no reading is one
:class:`~anonlens.errors.OptionError` line naming the key, the value and the expected type. Ranges
are checked where the options are used (:meth:`anonlens.registry.Registry.check_options`).

>>> parse_options(["strength=0.3", "color=[255,0,0]", "verify=TRUE", "method=telea"], "operator")
{'strength': 0.3, 'color': [255, 0, 0], 'verify': True, 'method': 'telea'}
>>> def make(*, name: str = "a", sigma: float = 1.0, seed: int | None = None): ...
>>> parse_options(["name=123", "sigma=.5", "seed=null"], "operator", target=make)
{'name': '123', 'sigma': 0.5, 'seed': None}
>>> parse_options(["sigma=abc"], "operator", target=make)
Traceback (most recent call last):
...
anonlens.errors.OptionError: operator option sigma='abc' is not valid: must be a finite number
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable, Iterable

from .errors import OptionError
from .registry import Entry, option_types, type_problem, value_text

__all__ = ["parse_options", "parse_value"]


def parse_value(text: str) -> Any:
    """The value of one ``key=value`` pair: a JSON literal when the (stripped) text is one,
    ``true``/``false`` in any case as booleans, else the text.

    >>> parse_value("8"), parse_value(" 0.25 "), parse_value("False"), parse_value("[255, 0, 0]"), parse_value("null")
    (8, 0.25, False, [255, 0, 0], None)
    >>> parse_value("telea"), parse_value('"8"'), parse_value("007"), parse_value("")
    ('telea', '8', '007', '')
    """
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON; a number over Python's digit limit; nesting too deep
        return text


def _readings(text: str) -> Iterable[Any]:
    """Other readings of a value's text, tried in turn when the JSON reading does not fit the type."""
    yield text.strip()
    for cast in (int, float):
        try:
            yield cast(text)
        except ValueError:
            pass


def _typed(value: Any, text: str, ann: Any) -> tuple[Any, str | None]:
    """``(value, None)`` for the first reading of ``text`` that fits ``ann``, else ``(value, problem)``."""
    problem = type_problem(value, ann)
    if problem is None:
        return value, None
    for reading in _readings(text):
        if type_problem(reading, ann) is None:
            return reading, None
    return value, problem


def _target_types(target: Entry[Any] | Callable[..., Any] | None) -> tuple[str | None, dict[str, Any]]:
    if target is None:
        return None, {}
    if isinstance(target, Entry):
        return target.name, target.option_types()
    return None, option_types(target)


def parse_options(pairs: Iterable[str] | None, what: str, *, target: Entry[Any] | Callable[..., Any] | None = None) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}`` (see the module's doc); ``what`` names the options
    in errors ("detector", "operator", ...). Keys are stripped and ``-`` becomes ``_``. A pair
    without ``=`` or a key, and a key given twice, are one-line :class:`~anonlens.errors.OptionError`\\ s.

    >>> parse_options(["max-side=1280"], "detector")
    {'max_side': 1280}
    >>> parse_options(["threshold"], "detector")
    Traceback (most recent call last):
    ...
    anonlens.errors.OptionError: detector option 'threshold' must look like key=value
    >>> parse_options(["threshold=0.3", "threshold=0.5"], "detector")
    Traceback (most recent call last):
    ...
    anonlens.errors.OptionError: detector option 'threshold' is given twice ('threshold=0.3' and 'threshold=0.5'); keep one
    """
    name, types = _target_types(target)
    where = f"{what} '{name}':" if name else what  # the registry's wording: "operator 'blur': option ..."
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, text = str(pair).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise OptionError(f"{what} option {value_text(pair)} must look like key=value")
        if key in out:
            raise OptionError(f"{what} option {value_text(key)} is given twice ({value_text(given[key])} and {value_text(pair)}); keep one")
        value, problem = _typed(parse_value(text), text, types.get(key, inspect.Parameter.empty))
        if problem is not None:
            raise OptionError(f"{where} option {key}={value_text(value)} is not valid: must be {problem}")
        out[key], given[key] = value, str(pair)
    return out
