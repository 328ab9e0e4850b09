"""The documentation: the site builds with warnings as errors, its command reference (generated from
the CLI) names every command, it loads nothing from another origin, every `anonlens ...` command in
the guides and the README is one the CLI accepts (names, options and values parsed by the CLI's own
parser), and the README stays one screen whose links resolve."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from anonlens.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: the README's first screen: what a terminal shows without scrolling much
README_MAX_LINES = 60


def _all_commands() -> list[str]:
    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="anonlens")
    names = []
    for name in group.list_commands(root):
        cmd = group.get_command(root, name)
        if hasattr(cmd, "list_commands"):
            names += [f"{name} {sub}" for sub in cmd.list_commands(typer.Context(cmd, info_name=name, parent=root))]
        else:
            names.append(name)
    return names


def _shown_commands(text: str) -> list[str]:
    """Every `anonlens ...` line of the fenced shell blocks (continuations joined)."""
    found = []
    for block in re.findall(r"```(?:bash|console|sh)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("anonlens "):
                found.append(line)
    return found


def test_the_site_builds_strictly_with_a_complete_command_reference(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(site)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    reference = (site / "cli" / "index.html").read_text()
    headings = set(re.findall(r"<h2 id=\"[^\"]*\"><code>anonlens ([^<]+)</code>", reference))
    assert headings == set(_all_commands())
    assert "--scope" in reference and "--keep-metadata" in reference and "anonlens[video]" in reference
    assert not (site / "hooks.py").exists()
    for page in site.rglob("*.html"):  # nothing loaded from another origin (fonts, scripts, styles, images)
        html = page.read_text()
        assert not re.findall(r"<(?:script|img|link)[^>]+(?:src|href)=\"(?:https?:)?//", html), page


def test_every_command_in_the_guides_is_one_the_cli_accepts():
    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="anonlens")
    shown = [(md.name, line) for md in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"] for line in _shown_commands(md.read_text())]
    assert len(shown) >= 40
    assert {"anonymize", "check", "report", "score", "serve"} <= {line.split()[1] for _, line in shown}
    rejected = []
    for where, line in shown:
        args = shlex.split(line, comments=True)[1:]
        try:
            name, cmd, rest = group.resolve_command(root, args)
            if hasattr(cmd, "list_commands"):
                _, cmd, rest = cmd.resolve_command(typer.Context(cmd, info_name=name, parent=root), rest)
            cmd.make_context(name, rest, parent=root)
        except Exception as exc:  # a renamed option, a removed command, a value of the wrong type
            rejected.append(f"{where}: {line} -> {type(exc).__name__}: {exc}")
    assert rejected == []


def test_the_readme_is_one_screen_with_the_two_commands_and_working_links():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert blocks[0].strip().endswith("anonlens demo") and blocks[1].strip().endswith("pytest")
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert len(links) >= 10 and all((ROOT / link).is_file() for link in links), links


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_every_page_is_in_the_navigation(page):
    nav = (ROOT / "mkdocs.yml").read_text()
    assert f": {page}" in nav


def test_the_guides_commands_that_need_no_files_run():
    """The commands of the guides that read no file (listings, presets) run as shown; the others
    (anonymize, check, score, report, demo, ...) run in their own tests on real data."""
    from typer.testing import CliRunner

    shown = [line for md in sorted(DOCS.glob("*.md")) for line in _shown_commands(md.read_text())]
    runnable = {tuple(args) for args in (shlex.split(line, comments=True)[1:] for line in shown)
                if not any("/" in a or ("." in a and not a.startswith("-")) for a in args) and args[0] != "serve"}
    assert {("metrics",), ("weights", "list"), ("attack", "presets")} <= runnable
    for args in sorted(runnable):
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == 0 and r.output.strip(), (args, r.output)
