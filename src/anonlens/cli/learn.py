"""Commands for the learned metrics: splits. Thin shells over anonlens.learn."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import AnonlensError
from .main import _fail, app, out_console


@app.command("splits")
def splits_cmd(
    data_dir: Path = typer.Argument(..., help="Folder with HA1.csv and/or HA2.csv and the images they name."),
    csv: Optional[List[Path]] = typer.Option(None, help="Annotation CSV(s) to split (default: HA1.csv and HA2.csv in DATA_DIR)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where dataset_splits/ goes (default: DATA_DIR, as the reference)."),
    split: Optional[List[str]] = typer.Option(None, help="Only these splits (default: all, task-*, loov-<dataset>, anon-<method> for the values present)."),
    seed: int = typer.Option(42, help="Random seed (the reference uses 42)."),
    verify_images: bool = typer.Option(False, "--verify-images", help="Also decode every image (slower) instead of only checking that it exists."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Write the PerceptAnon reference splits, dataset_splits/<HA>/<split>/{train,val,test}.csv:
    the same rows as the reference for the same CSV and seed. Image paths are checked first (inside
    DATA_DIR, present); every problem is listed before anything is written."""
    from ..assess.pairs import safe_join
    from ..learn.annotations import check_images, load_annotations
    from ..learn.splits import write_splits

    csvs = list(csv or [p for p in (data_dir / "HA1.csv", data_dir / "HA2.csv") if p.is_file()])
    if not csvs:
        _fail(f"no HA1.csv or HA2.csv in {data_dir}; name the annotation file(s) with --csv")
    results = {}
    try:
        for path in csvs:
            df, raw = load_annotations(path, with_raw=True)
            if verify_images:
                problems = check_images(df, data_dir)
            else:
                problems = []
                for i, row in enumerate(df.itertuples(index=False), start=2):
                    for col in ("original", "anonymized"):
                        try:
                            if not safe_join(data_dir, str(getattr(row, col))).is_file():
                                problems.append(f"row {i} {col}: missing file {getattr(row, col)}")
                        except AnonlensError as exc:
                            problems.append(f"row {i} {col}: {exc}")
            if problems:
                listing = "\n  ".join(problems[:30]) + (f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else "")
                _fail(f"{path}: {len(problems)} image problem(s), nothing written:\n  {listing}")
            results[path.stem] = write_splits(df, output or data_dir, path.stem, split or None, seed=seed, raw=raw)
    except AnonlensError as exc:
        _fail(str(exc))
    failed = [(n, s, c["error"]) for n, splits in results.items() for s, c in splits.items() if "error" in c]
    if json_out:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        raise typer.Exit(1 if failed else 0)
    table = Table(title=f"splits written to {escape(str((output or data_dir) / 'dataset_splits'))}", header_style="bold")
    for col in ("annotations", "split", "train", "val", "test"):
        table.add_column(col, justify="left" if col in ("annotations", "split") else "right")
    for name, splits in results.items():
        for s, c in splits.items():
            if "error" not in c:
                table.add_row(name, s, str(c["train"]), str(c["val"]), str(c["test"]))
    out_console.print(table)
    for name, s, error in failed:
        out_console.print(f"[red]{escape(name)} {escape(s)} not written:[/] {escape(error)}")
    raise typer.Exit(1 if failed else 0)
