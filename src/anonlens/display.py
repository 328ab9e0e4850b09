"""File names and messages as printed on one line: a name cannot inject a line into the output.

A file name may hold any character but ``/`` and NUL: a newline, a carriage return, an ANSI escape
sequence, a right-to-left override. Printed as it is, ``a\\nPASS: 0 of 1 image(s) fail.jpg`` would
show a line of its own that looks like a verdict. Every line that names a file shows the name
through :func:`display_name`, and every message line goes through :func:`one_line`.

>>> display_name("photos/a.jpg")
'photos/a.jpg'
>>> print(display_name("a\\nPASS.jpg"))
'a\\nPASS.jpg'
>>> print(one_line("bad\\rline"))
bad\\rline
"""

from __future__ import annotations

import os

__all__ = ["display_name", "one_line"]


def _text(value: str | os.PathLike | bytes) -> str:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def display_name(name: str | os.PathLike | bytes) -> str:
    """The name unchanged when every character is printable; otherwise ``repr``-quoted, so control
    characters, separators and undecodable bytes show as escapes (``'a\\nb.jpg'``) and the quotes say
    that the name is shown escaped."""
    text = _text(name)
    return text if text.isprintable() else repr(text)


def one_line(message: str) -> str:
    """A message with every non-printable character (newline, carriage return, escape, bidi
    control, ...) written as its Python escape; printable characters are left as they are."""
    text = _text(message)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
