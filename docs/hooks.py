"""MkDocs hook: the command reference (docs/cli.md) generated from the Typer app when the site is
built, so it never drifts from the program. Markdown only: every command of every help panel, its
usage, help text and options (as ``--help`` shows them: names, value, help, default, range)."""

from __future__ import annotations

import re

import typer

MARKER = "<!-- anonlens-cli-reference -->"


def _plain(text: str | None) -> str:
    """Help text as Markdown: Rich's escaped brackets unescaped, Rich markup tags dropped."""
    text = (text or "").replace("\\[", "[")
    text = re.sub(r"\[/?(bold|dim|italic|red|green|yellow|cyan)\]", "", text)
    return re.sub(r"\s*\n\s*", " ", text).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _command(name: str, cmd, parent: typer.Context) -> list[str]:
    ctx = typer.Context(cmd, info_name=name, parent=parent)
    out = [f"## `anonlens {name}`", "", f"```text\n{cmd.get_usage(ctx)}\n```", "", _plain(cmd.help), ""]
    arguments = [p for p in cmd.params if p.param_type_name == "argument"]
    options = [p for p in cmd.params if p.param_type_name == "option" and not p.hidden and p.name != "help"]
    if arguments:
        out += ["| argument | help |", "|---|---|"]
        out += [f"| `{(p.name or '').upper()}` | {_cell(_plain(getattr(p, 'help', '')))} |" for p in arguments]
        out.append("")
    if options:
        out += ["| option | help |", "|---|---|"]
        for p in options:
            names, text = p.get_help_record(ctx) or (", ".join(p.opts), p.help or "")
            out.append(f"| `{_cell(names)}` | {_cell(_plain(text))} |")
        out.append("")
    return out


def cli_reference() -> str:
    """The whole reference as Markdown."""
    from anonlens.cli.main import app

    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="anonlens")
    lines = [f"```text\n{group.get_usage(root)}\n```", "", _plain(group.help), ""]
    for name in group.list_commands(root):
        cmd = group.get_command(root, name)
        if cmd is None or cmd.hidden:
            continue
        if hasattr(cmd, "list_commands"):  # a group: its commands, one by one
            sub_ctx = typer.Context(cmd, info_name=name, parent=root)
            for sub in cmd.list_commands(sub_ctx):
                lines += _command(f"{name} {sub}", cmd.get_command(sub_ctx, sub), root)
        else:
            lines += _command(name, cmd, root)
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
