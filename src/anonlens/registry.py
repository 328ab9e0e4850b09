"""A small name -> factory registry, one per kind (detectors, operators, metrics, models).

Modelled on timm's ``create_model``/``list_models`` and pyiqa's ``create_metric``: a user names a
thing and gets it; options are checked against the factory's keyword arguments; an unknown name or
option gets a "did you mean" error.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")

__all__ = ["Registry", "Entry", "suggest"]


def suggest(name: str, choices: list[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: its factory, fixed arguments and declared capabilities."""

    name: str
    factory: Callable[..., T]
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Keyword options the factory accepts, with their default values."""
        sig = inspect.signature(self.factory)
        out = {}
        for p in sig.parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in self.defaults:
                out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return out


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

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        *,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        **tags: Any,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; returns the factory unchanged."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, summary=summary, defaults=defaults, **tags)
            return factory

        return decorator

    def add(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        **tags: Any,
    ) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        doc = summary or (inspect.getdoc(factory) or "").strip().split("\n")[0]
        self._entries[name] = Entry(name, factory, doc, dict(defaults or {}), dict(tags))

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
                        f"{self.kind} '{name}' has no option '{key}'.{suggest(key, list(allowed))}"
                        f" Options: {', '.join(allowed) or 'none'}"
                    )
        return entry.factory(**{**entry.defaults, **options})

    def require(self, name: str) -> None:
        """Raise :class:`~anonlens.extras.MissingExtraError` when ``name`` needs a missing extra."""
        extra = self.get(name).tags.get("extra")
        if extra:
            from .extras import require_extra

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
