"""What the ``anonlens`` command modules share: the Typer app they register on, the consoles,
one-line failures, the extras check, ``key=value`` options, the engine options, progress bars, and
the rendering that several command groups use (scores, classifier training). It imports nothing
from the other cli modules; they import only this one (see ARCHITECTURE.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .. import options
from ..assess import ScoreOptions, score_pairs
from ..display import display_name, one_line
from ..engines import create_engine
from ..errors import AnonlensError, OptionError
from ..extras import MissingExtraError, require_extra
from ..metrics import column_directions

__all__ = ["app", "print_listing", "LISTING_TABLE_WIDTH", "out_console", "err_console", "EXIT_REVIEW", "fail", "require", "parse_options", "metric_options",
           "parse_size", "ENGINE_HELP", "RAY_ADDRESS_HELP", "ENGINE_OPTION_HELP", "make_engine", "epoch_progress",
           "run_score", "print_score_summary", "train_classifier_cli"]

app = typer.Typer(
    name="anonlens",
    help="Anonymize people in images, then measure how anonymous the result is.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
# soft_wrap: a printed line (a file name, a verdict, an error) is never broken at the terminal's
# width, so scripts can grep it whatever the path length; tables still fit the terminal.
out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


#: listings (detectors, operators, metrics, weights) are tables on terminals at least this wide,
#: and one entry per block of lines below it: a name is never cut, whatever the width
LISTING_TABLE_WIDTH = 100


def print_listing(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A listing whose first column is a name: a table (the name never wrapped, the other cells
    folded) on a wide terminal, else each row as its name then one indented line per column.
    Cells are rich markup (escape what is not)."""
    if out_console.width >= LISTING_TABLE_WIDTH:
        table = Table(title=title, header_style="bold")
        table.add_column(columns[0], no_wrap=True, min_width=max([len(columns[0])] + [len(r[0]) for r in rows]))
        for col in columns[1:]:
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(*r)
        out_console.print(table)
        return
    out_console.print(f"[bold]{escape(title)}[/]")
    for r in rows:
        out_console.print(f"[bold]{r[0]}[/]")
        for col, cell in zip(columns[1:], r[1:]):
            if cell:
                out_console.print(f"  {escape(col)}: {cell}")


#: exit code when, with the default --on-empty, some image had nothing found (1 = failed, 2 = usage)
EXIT_REVIEW = 3


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}")  # one line, whatever a file name holds
    raise typer.Exit(code)


def require(extra: str, feature: str) -> None:
    """Stop with one line naming the extra to install (exit 2) before any file is touched."""
    try:
        require_extra(extra, feature)
    except MissingExtraError as exc:
        fail(str(exc))


ENGINE_HELP = ("Where the work runs: local (this machine's process pool) or ray (a Ray started on this machine for the run, "
               "or the cluster of --ray-address). Needs pip install 'anonlens\\[ray]'.")
RAY_ADDRESS_HELP = ("Join a running Ray cluster (HOST:PORT, or auto) instead of starting one; implies --engine ray. Every node "
                    "needs this anonlens version and the same paths (a shared file system).")
ENGINE_OPTION_HELP = ("Ray engine option key=value (repeatable): files_per_task=4 (pairs_per_task for score), max_retries=2 "
                      "(a task whose worker dies is retried this often, then its files one by one), threads_per_worker=1, temp_dir=DIR "
                      "(Ray's session folder for a Ray started here; default /tmp/ray).")


def make_engine(engine: str, ray_address: Optional[str], workers: int, engine_option: Optional[List[str]]):
    """The engine the CLI's --engine/--ray-address/--workers/--engine-option name (not started yet);
    one-line errors (exit 2) for an unknown engine, a missing extra or a bad option."""
    opts = parse_options(engine_option, "engine")
    if ray_address:
        if engine not in ("local", "ray"):
            fail(f"unknown engine '{engine}'; known: local, ray")
        engine = "ray"
    if engine == "ray":
        opts = {**opts, "address": ray_address, "workers": workers}
    elif opts:
        fail("--engine-option applies to --engine ray")
    else:
        opts = {"workers": workers}
    try:
        return create_engine(engine, **opts)
    except (AnonlensError, TypeError) as exc:
        fail(str(exc))


def parse_options(pairs: List[str] | None, what: str, *, target: Any = None) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict by :func:`anonlens.options.parse_options`, the service's
    grammar too (JSON values, ``true``/``false`` in any case, else text; typed by ``target``, a
    registry entry, when given). A malformed pair or a key given twice: one line, exit 2. The
    values' types and ranges are checked where the options are used (the registries)."""
    try:
        return options.parse_options(pairs, what, target=target)
    except OptionError as exc:
        fail(str(exc))


def metric_options(pairs: Optional[List[str]]) -> tuple:
    grouped: dict[str, dict] = {}
    for key, value in parse_options(pairs, "metric").items():
        if "." not in key:
            fail(f"metric option '{key}' must look like metric.key=value, e.g. lpips.net=vgg")
        metric, opt = key.split(".", 1)
        grouped.setdefault(metric.replace("_", "-"), {})[opt] = value
    return tuple((m, tuple(sorted(o.items()))) for m, o in grouped.items())


def parse_size(resize: Optional[str]):
    if not resize:
        return None
    try:
        w, h = (int(v) for v in resize.lower().split("x"))
    except ValueError:
        fail(f"--resize must look like 224x224, got '{resize}'")
    return (w, h)


def epoch_progress(title: str, quiet: bool):
    """A rich progress bar over epochs with an info field (loss...)."""
    return Progress(TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=quiet)


def run_score(pairs, output: Optional[Path], metrics: tuple[str, ...], metric_options: tuple, *, resize=None,
              batch_size: int = 16, threshold: float = 0.6, quiet: bool = False, engine=None):
    """Score with a progress bar (on ``engine``, default: this process); returns the ScoreResult."""
    options = ScoreOptions(metrics=metrics, metric_options=metric_options, batch_size=batch_size, resize=resize, threshold=threshold)
    progress = Progress(
        TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err_console, disable=quiet,
    )
    with progress:
        task = progress.add_task("score", total=len(pairs))
        return score_pairs(pairs, output, options, progress=lambda n: progress.update(task, completed=n), engine=engine)


def print_score_summary(result, json_out: bool) -> None:
    import pandas as pd

    if json_out:
        sys.stdout.write(json.dumps({"summary": result.summary, "groups": result.groups, "errors": result.errors,
                                     "table": str(result.table_csv) if result.table_csv else None}, indent=2, default=str) + "\n")
        return
    table = Table(title="anonlens score", header_style="bold")
    for col in ("metric", "mean", "median", "more private when", "pairs"):
        table.add_column(col, justify="left" if col in ("metric", "more private when") else "right")
    if result.table_csv is not None:
        directions = column_directions()
        df = pd.read_csv(result.table_csv)
        for col in result.columns:
            if col not in directions or col == "reidentified":
                continue
            values = pd.to_numeric(df[col], errors="coerce").replace([float("inf")], float("nan")).dropna()
            if not values.empty:
                table.add_row(col, f"{values.mean():.4g}", f"{values.median():.4g}", directions[col], str(len(values)))
    out_console.print(table)
    for name, groups in result.groups.items():
        for group, v in groups.items():
            value = "n/a: " + v["error"] if v.get("value") is None else f"{v['value']:.4g}"
            out_console.print(f"{name} [{escape(one_line(group))}] (n={v['n']}): {escape(one_line(value))}")
    for k, v in result.summary.items():
        if k.startswith(("reid_rate", "rank1", "faces_in")):
            out_console.print(f"{k}: {'n/a' if v is None else (f'{v:.3f}' if isinstance(v, float) else v)}")
    if result.errors:
        out_console.print(f"[red]{len(result.errors)} pair(s) could not be scored:[/]")
        for e in result.errors[:20]:
            out_console.print(f"  {escape(one_line(e['error']))}")
    if result.table_csv:
        out_console.print(f"table: {escape(display_name(result.table_csv))}")


def train_classifier_cli(data_dir: Path, output: Path, options: dict, device: str | None, quiet: bool, title: str, what: str) -> None:
    """Train an identity classifier with a progress bar and print where it went (train-identity,
    attack train-victim)."""
    from ..edi.classifier import IdentityTrainOptions, train_identity
    from ..learn.train import choose_device

    try:
        opts = IdentityTrainOptions(**options, device=choose_device(device))
        bar = epoch_progress(title, quiet)
        with bar:
            tid = bar.add_task("train", total=opts.epochs, info="")
            res = train_identity(data_dir, output, opts, progress=lambda epoch, row: bar.update(
                tid, completed=epoch, info=f"loss {row['train_loss']:.4f}" + (f" val acc {row['val_accuracy']:.3f}" if "val_accuracy" in row else "")))
    except AnonlensError as exc:
        fail(str(exc))
    val = "n/a" if res.val_accuracy is None else f"{res.val_accuracy:.3f}"
    out_console.print(f"{what}: {escape(display_name(res.checkpoint))}\ntrain accuracy {res.train_accuracy:.3f}, validation accuracy {val}")
