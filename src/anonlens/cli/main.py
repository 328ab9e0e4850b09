"""``anonlens`` command line: the entry point. The commands live in one module per group, each
registering on the shared app of :mod:`anonlens.cli.kit`; importing them here, in this order,
is what lists them in ``anonlens --help`` (the anonymize commands first)."""

from __future__ import annotations

import typer

from .._version import __version__
from . import anonymize, assess, learn, edi, agan, attack, serve  # noqa: F401,I001  (register their commands, in this order)
from .kit import app, out_console

__all__ = ["app", "main"]


def _version(value: bool) -> None:
    if value:
        out_console.print(f"anonlens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """anonlens: anonymize faces and people in images, fail closed, keep no metadata."""


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
