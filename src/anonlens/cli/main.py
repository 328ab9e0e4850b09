"""``anonlens`` command line: the entry point. The commands live in one module per group, each
registering on the shared app of :mod:`anonlens.cli.kit`; importing them here, in this order,
is what lists them in ``anonlens --help`` (the anonymize commands first)."""

from __future__ import annotations

import typer

from .._version import __version__
from . import anonymize, assess, learn, edi, agan, attack, serve  # noqa: F401,I001  (register their commands, in this order)
from .kit import app, out_console

__all__ = ["app", "main", "PANELS"]

#: ``anonlens --help``: each command's panel and one-line summary, the panels in this order and the
#: commands in each in this order (the release workflow first); ``anonlens COMMAND --help`` keeps
#: the whole text
PANELS: dict[str, list[tuple[str, str]]] = {
    "Release workflow": [
        ("demo", "The main job on built-in sample photos, checked."),
        ("anonymize", "Anonymize photos and videos; verified, no metadata."),
        ("inspect", "Show the metadata a file carries (EXIF, XMP, ICC...)."),
        ("check", "Gate a release: exit 0 only when every image passes."),
        ("report", "HTML report of scored images, the riskiest first."),
        ("serve", "Web API and page; uploads never stored or logged."),
    ],
    "Assess and configure": [
        ("score", "Score anonymized images against their originals."),
        ("metrics", "List the metrics, their direction and options."),
        ("detectors", "List the detectors and their options."),
        ("operators", "List the anonymization operators and their options."),
        ("weights", "Model weight files: where they are, whether intact."),
        ("correlate", "Correlate each metric with human scores."),
        ("calibrate", "Identity threshold with the best F1 on your pairs."),
    ],
    "Research: learned metrics (PerceptAnon, SemSim, EDI-Anon)": [
        ("splits", "Write the PerceptAnon reference splits."),
        ("train", "Train a PerceptAnon metric (HA1 CNN or HA2 Siamese)."),
        ("evaluate", "Correlate a trained metric with human scores."),
        ("explain", "Grad-CAM heat map of a trained metric over an image."),
        ("benchmark", "The paper's table: every metric vs human scores."),
        ("import-checkpoint", "A reference checkpoint into anonlens' safe format."),
        ("semsim", "SemSim: embedding of human recognition judgements."),
        ("train-identity", "Train EDI-Anon's white-box identity classifier."),
        ("tradeoff", "EDI vs uniform: re-identification against utility."),
    ],
    "Research: generation and attacks": [
        ("agan", "A-GAN: replace people with generated ones."),
        ("attack", "Gradient inversion attacks (DLG, Inverting Gradients)."),
    ],
}


def _arrange(typer_app: typer.Typer) -> None:
    """Put every command and group of ``typer_app`` in its :data:`PANELS` panel, in that order, with
    its one-line summary (a name missing from PANELS is a bug, found by the tests)."""
    where = {name: (panel, i, summary) for i, (panel, items) in enumerate(PANELS.items()) for name, summary in items}
    order = {name: k for k, name in enumerate(n for items in PANELS.values() for n, _ in items)}
    for info in typer_app.registered_commands + typer_app.registered_groups:
        name = info.name
        if name in where:
            info.rich_help_panel = where[name][0]
            info.short_help = where[name][2]
    typer_app.registered_commands.sort(key=lambda c: order.get(c.name, len(order)))
    typer_app.registered_groups.sort(key=lambda g: order.get(g.name, len(order)))


_arrange(app)


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
