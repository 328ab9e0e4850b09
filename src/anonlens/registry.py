"""A small name -> factory registry, one per kind (detectors, operators, metrics, models).

Modelled on timm's ``create_model``/``list_models`` and pyiqa's ``create_metric``: a user names a
thing and gets it; options are checked against the factory's keyword arguments; an unknown name or
option gets a "did you mean" error.

Option values are checked before the factory runs (so before any weights are loaded or any work
is done): against the ``ranges`` declared where the name is registered (``"(0, 1)"``,
``"[0, 255]"``, ``"> 0"``, ``">= 1"``; a list's items each), and, in a registry created with
``check_types=True``, against the type of the factory's keyword (its annotation, else its
default: a number, an integer, true/false, one of a ``Literal``'s values, a string, a list).
A wrong value is one :class:`~anonlens.errors.OptionError` line.
"""

from __future__ import annotations

import collections.abc
import difflib
import functools
import inspect
import math
import numbers
import os
import re
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Generic, Iterator, Literal, Mapping, TypeVar, Union, get_args, get_origin

from .errors import OptionError, UnknownNameError
from .extras import require_extra

T = TypeVar("T")

__all__ = ["Registry", "Entry", "OptionRange", "suggest", "option_types", "type_problem", "value_text"]


def suggest(name: str, choices: list[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")
_BOUND = re.compile(r"^\s*(>=|<=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class OptionRange:
    """The numbers an option accepts, written as an interval or a bound.

    >>> r = OptionRange.parse("(0, 1)")
    >>> (0.5 in r, 0 in r, 1.0 in r, r.describe())
    (True, False, False, 'in (0, 1)')
    >>> OptionRange.parse(">= 1").describe(), 1 in OptionRange.parse(">= 1")
    ('>= 1', True)
    """

    text: str
    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False

    @classmethod
    def parse(cls, text: str) -> "OptionRange":
        m = _INTERVAL.match(text)
        if m:
            low, high = float(m.group(2)), float(m.group(3))
            if not low <= high:
                raise ValueError(f"option range {text!r}: the lower bound is above the upper one")
            return cls(f"{m.group(1)}{m.group(2)}, {m.group(3)}{m.group(4)}", low, high, m.group(1) == "[", m.group(4) == "]")
        m = _BOUND.match(text)
        if m:
            op, bound = m.group(1), float(m.group(2))
            if op.startswith(">"):
                return cls(f"{op} {m.group(2)}", low=bound, low_closed=op == ">=")
            return cls(f"{op} {m.group(2)}", high=bound, high_closed=op == "<=")
        raise ValueError(f"option range {text!r} must look like '(0, 1)', '[0, 255]', '> 0' or '>= 1'")

    def __contains__(self, value: object) -> bool:
        v = float(value)  # type: ignore[arg-type]
        if not math.isfinite(v):
            return False
        above = v >= self.low if self.low_closed else v > self.low
        below = v <= self.high if self.high_closed else v < self.high
        return above and below

    def describe(self) -> str:
        return f"in {self.text}" if self.text[0] in "[(" else self.text


_NONE = type(None)
_PLURAL = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _items(value: Any) -> list[Any] | None:
    """A list, tuple or one-dimensional array as a list of its items; None for anything else."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if getattr(value, "ndim", None) == 1 and hasattr(value, "tolist"):
        return value.tolist()
    return None


def type_problem(value: Any, ann: Any) -> str | None:
    """None when ``value`` fits the annotation ``ann``, else what it must be ("a finite number").
    Annotations this does not know (classes, callables) accept anything: the factory checks.

    >>> type_problem(3, float), type_problem("abc", float), type_problem([1, 2], tuple[int, int, int])
    (None, 'a finite number', 'a list of 3 integers')
    """
    if ann is inspect.Parameter.empty or ann is Any or isinstance(ann, str):
        return None
    origin, args = get_origin(ann), get_args(ann)
    if origin is Union or origin is types.UnionType:
        if value is None and _NONE in args:
            return None
        problems = [type_problem(value, a) for a in args if a is not _NONE]
        if any(p is None for p in problems):
            return None
        return " or ".join(dict.fromkeys(p for p in problems if p)) + (" (or left out)" if _NONE in args else "")
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return None
        return "one of " + ", ".join(repr(a) for a in args)
    if ann is bool:
        return None if _is_bool(value) else "true or false"
    if ann is int:
        if isinstance(value, numbers.Integral) and _is_number(value):
            return None
        if _is_number(value) and math.isfinite(float(value)) and float(value).is_integer():
            return None
        return "an integer"
    if ann is float:
        return None if _is_number(value) and math.isfinite(float(value)) else "a finite number"
    if ann is str:
        return None if isinstance(value, (str, os.PathLike)) else "a string"
    if ann in (tuple, list) or origin in (tuple, list, collections.abc.Sequence):
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        item = (args[0] if len(set(args) - {Ellipsis}) == 1 else None) if args else None
        want = f"a list of {len(args) if fixed else ''} {_PLURAL.get(item, 'values')}".replace("  ", " ")
        items = _items(value)
        if items is None or (fixed and len(items) != len(args)):
            return want
        for v, a in zip(items, args if fixed else [args[0] if args else Any] * len(items)):
            if type_problem(v, a) is not None:
                return want
        return None
    return None


def value_text(value: Any, limit: int = 80) -> str:
    """``repr(value)`` on one line, at most ``limit`` characters (an error message is one line)."""
    text = re.sub(r"\s*\n\s*", " ", repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.lru_cache(maxsize=None)
def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    """The factory's signature with its annotations evaluated where they can be (else as text)."""
    try:
        return inspect.signature(factory, eval_str=True)
    except Exception:  # an annotation naming something only imported for type checkers
        return inspect.signature(factory)


def _expected_type(param: inspect.Parameter) -> Any:
    """The parameter's annotation, else the type of its default (bool, int, float or str)."""
    if param.annotation is not inspect.Parameter.empty and not isinstance(param.annotation, str):
        return param.annotation
    if type(param.default) in (bool, int, float, str):
        return type(param.default)
    return inspect.Parameter.empty


def option_types(factory: Callable[..., Any], fixed: Collection[str] = ()) -> dict[str, Any]:
    """The declared type of each keyword option of ``factory`` (its annotation, else the type of
    its default; ``inspect.Parameter.empty`` when neither says), leaving out the ``fixed`` ones.

    >>> def make(*, side=1.0, name: str = "a", data=None): ...
    >>> option_types(make)
    {'side': <class 'float'>, 'name': <class 'str'>, 'data': <class 'inspect._empty'>}
    """
    return {p.name: _expected_type(p) for p in _signature(factory).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in fixed}


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: its factory, fixed arguments and declared capabilities."""

    name: str
    factory: Callable[..., T]
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    #: declared numeric ranges of options (a list option: each item)
    ranges: Mapping[str, OptionRange] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Keyword options the factory accepts, with their default values."""
        sig = inspect.signature(self.factory)
        out = {}
        for p in sig.parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in self.defaults:
                out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return out

    def option_types(self) -> dict[str, Any]:
        """The declared type of each keyword option (see :func:`option_types`)."""
        return option_types(self.factory, self.defaults)


class Registry(Generic[T]):
    """Registry of one kind of object.

    >>> reg = Registry("shape")
    >>> @reg.register("square", summary="A square.")
    ... def make_square(*, side=1):
    ...     return ("square", side)
    >>> reg.create("square", side=3)
    ('square', 3)
    >>> reg.create("sqare")
    Traceback (most recent call last):
    ...
    anonlens.errors.UnknownNameError: unknown shape 'sqare'. Did you mean 'square'? Known: square
    """

    def __init__(self, kind: str, *, check_types: bool = False):
        self.kind = kind
        #: check option values against the factory's annotations (else only declared ranges)
        self.check_types = check_types
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        *,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        ranges: Mapping[str, str] | None = None,
        **tags: Any,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; returns the factory unchanged."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, summary=summary, defaults=defaults, ranges=ranges, **tags)
            return factory

        return decorator

    def add(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        ranges: Mapping[str, str] | None = None,
        **tags: Any,
    ) -> None:
        """Register ``factory`` as ``name``. ``ranges`` declares the numbers an option accepts
        (``{"threshold": "(0, 1)", "sigma": "> 0"}``), checked by :meth:`create`."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        doc = summary or (inspect.getdoc(factory) or "").strip().split("\n")[0]
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in ranges or {}:
            if key not in params and not takes_any:
                raise ValueError(f"{self.kind} '{name}': a range is declared for '{key}', which is not an option")
        parsed = {k: OptionRange.parse(v) for k, v in (ranges or {}).items()}
        self._entries[name] = Entry(name, factory, doc, dict(defaults or {}), dict(tags), parsed)

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            names = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'.{suggest(name, names)} Known: {', '.join(names)}"
            ) from None

    def create(self, name: str, **options: Any) -> T:
        """Build the object registered as ``name`` with ``options`` (checked against its signature).

        An entry tagged ``extra="learn"`` first checks that the extra is installed (one clear
        error naming the pip command otherwise)."""
        entry = self.get(name)
        self.require(name)
        allowed = entry.options()
        sig = inspect.signature(entry.factory)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        if not takes_any:
            for key in options:
                if key not in allowed:
                    raise UnknownNameError(
                        f"{self.kind} '{name}' has no option {key!r}.{suggest(key, list(allowed))}"
                        f" Options: {', '.join(allowed) or 'none'}"
                    )
        self.check_options(name, options)
        return entry.factory(**{**entry.defaults, **options})

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """Raise :class:`~anonlens.errors.OptionError` (one line) for the first option value of the
        wrong type (registries with ``check_types``) or outside its declared range.

        >>> reg = Registry("shape", check_types=True)
        >>> reg.add("square", lambda *, side=1.0: side, ranges={"side": "> 0"})
        >>> reg.check_options("square", {"side": 0})
        Traceback (most recent call last):
        ...
        anonlens.errors.OptionError: shape 'square': option side=0 is out of range: must be > 0
        >>> reg.check_options("square", {"side": "abc"})
        Traceback (most recent call last):
        ...
        anonlens.errors.OptionError: shape 'square': option side='abc' is not valid: must be a finite number
        """
        entry = self.get(name)
        params = _signature(entry.factory).parameters
        for key, value in options.items():
            where = f"{self.kind} '{name}': option {key}={value_text(value)}"
            param = params.get(key)
            if self.check_types and param is not None:
                problem = type_problem(value, _expected_type(param))
                if problem is not None:
                    raise OptionError(f"{where} is not valid: must be {problem}")
            rng = entry.ranges.get(key)
            if rng is None or value is None:
                continue
            items = _items(value)
            for item in [value] if items is None else items:
                if not _is_number(item):
                    raise OptionError(f"{where} is not valid: must be a number {rng.describe()}")
                if item not in rng:
                    raise OptionError(f"{where} is out of range: must be {rng.describe()}")

    def require(self, name: str) -> None:
        """Raise :class:`~anonlens.extras.MissingExtraError` when ``name`` needs a missing extra."""
        extra = self.get(name).tags.get("extra")
        if extra:
            require_extra(extra, f"{self.kind} '{name}'")

    def names(self, **tags: Any) -> list[str]:
        """Registered names, optionally only those whose tags match ``tags``."""
        return sorted(
            n for n, e in self._entries.items() if all(e.tags.get(k) == v for k, v in tags.items())
        )

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
