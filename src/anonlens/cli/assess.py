"""Assessment commands: score, correlate, check, weights. Thin shells over anonlens.assess."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..assess import pairs_from_csv, pairs_from_dirs
from ..audit import find_manifest
from ..display import display_name, one_line
from ..errors import AnonlensError
from ..io import write_atomic
from ..metrics import DEFAULT_METRICS, METRICS
from ..weights import WEIGHTS, resolve_weights
from .kit import (ENGINE_HELP, ENGINE_OPTION_HELP, RAY_ADDRESS_HELP, app, err_console, fail, make_engine, metric_options, out_console,
                  parse_size, print_listing, print_score_summary, require, run_score)

weights_app = typer.Typer(help="Model weight files: what anonlens knows, where they are, whether they are intact.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


def _metric_names(metrics: Optional[str]) -> tuple[str, ...]:
    if not metrics:
        return DEFAULT_METRICS
    names = tuple(m.strip() for m in metrics.split(",") if m.strip())
    for n in names:
        METRICS.get(n)  # did-you-mean error for typos
    return names


def _require_metrics(names: tuple[str, ...]) -> None:
    """Metrics that need an extra (LPIPS, FID, learned...) stop here, before any file is written."""
    for n in names:
        METRICS.require(n)


@app.command("score")
def score_cmd(
    anonymized: Optional[Path] = typer.Option(None, "--anonymized", "-a", help="Folder of anonymized images."),
    original: Optional[Path] = typer.Option(None, "--original", help="Folder of originals, paired by relative path. Omit for no-reference metrics."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="CSV of pairs (PerceptAnon HA1/HA2 format; column aliases accepted) instead of folders."),
    root: Optional[Path] = typer.Option(None, help="Data root the CSV's image paths are relative to (default: the CSV's folder)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for scores.csv, scores.jsonl, groups.csv, summary.json."),
    metrics: Optional[str] = typer.Option(None, help="Comma-separated metric names (see `anonlens metrics`). Default: mse,psnr,ssim,identity,residual-face,utility-outside."),
    metric_option: Optional[List[str]] = typer.Option(None, "--metric-option", "-m", help="metric.key=value (repeatable), e.g. -m lpips.allow_download=true, -m kid.subset_size=20."),
    model: Optional[Path] = typer.Option(None, "--model", help="A trained PerceptAnon metric (.safetensors + .json): adds its learned_score column."),
    semsim: Optional[Path] = typer.Option(None, "--semsim", help="A trained SemSim model (`anonlens semsim train`): adds its semsim distance column."),
    resize: Optional[str] = typer.Option(None, help="Resize both images to WxH first (aspect not kept), e.g. 224x224."),
    threshold: float = typer.Option(0.6, help="Identity distance below which a face counts as re-identified (dlib: 0.6)."),
    batch_size: int = typer.Option(16, min=1, help="Pairs per batch for the tensor metrics (and per Ray task)."),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    workers: int = typer.Option(0, "--workers", "-j", help="With --engine ray: the CPUs of the Ray started here (0: all)."),
    engine_option: Optional[List[str]] = typer.Option(None, "--engine-option", "-E", help=ENGINE_OPTION_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score anonymized images against their originals with every chosen metric; one row per pair."""
    try:
        names = _metric_names(metrics)
        options = metric_options(metric_option)
        if model is not None:
            names = tuple(n for n in names if n != "learned") + ("learned",)
            options = tuple(o for o in options if o[0] != "learned") + (("learned", (("checkpoint", str(model)),)),)
        if semsim is not None:
            names = tuple(n for n in names if n != "semsim") + ("semsim",)
            extra = dict(next((o[1] for o in options if o[0] == "semsim"), ()))  # e.g. -m semsim.normalize=true
            options = tuple(o for o in options if o[0] != "semsim") + (("semsim", tuple(sorted({**extra, "checkpoint": str(semsim)}.items()))),)
        _require_metrics(names)
        if pairs is not None:
            if anonymized is not None or original is not None:
                fail("give either --pairs or --anonymized/--original, not both")
            pair_list = pairs_from_csv(pairs, root=root)
        elif anonymized is not None:
            pair_list = pairs_from_dirs(anonymized, original)
        else:
            fail("give --anonymized DIR (with --original DIR) or --pairs CSV")
        bad = [p for p in pair_list if p.error]
        if bad:
            err_console.print(f"[yellow]{len(bad)} of {len(pair_list)} pair(s) cannot be scored (listed at the end)[/]")
        runner = make_engine(engine, ray_address, workers, engine_option) if engine != "local" or ray_address or engine_option else None
        if runner is None:
            result = run_score(pair_list, output, names, options, resize=parse_size(resize),
                               batch_size=batch_size, threshold=threshold, quiet=quiet)
        else:
            with runner:
                result = run_score(pair_list, output, names, options, resize=parse_size(resize),
                                   batch_size=batch_size, threshold=threshold, quiet=quiet, engine=runner)
    except AnonlensError as exc:
        fail(str(exc))
    print_score_summary(result, json_out)
    raise typer.Exit(1 if result.errors else 0)


@app.command("correlate")
def correlate_cmd(
    table: Path = typer.Argument(..., help="A per-pair table (scores.csv from `anonlens score`, or any CSV)."),
    human: str = typer.Option("score_mean", help="Column with the human scores."),
    human_lower_is_private: bool = typer.Option(False, "--human-lower-is-private", help="Say so when a low human score means more anonymous (PerceptAnon: 10 = fully anonymous)."),
    metrics: Optional[str] = typer.Option(None, help="Comma-separated metric columns. Default: every known metric column in the table."),
    by: str = typer.Option("split,dataset,method", help="Columns to break the correlation down by (those present)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95 % confidence intervals (0: none)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the full table (CSV) here."),
    json_out: bool = typer.Option(False, "--json", help="Print the table as JSON records."),
) -> None:
    """Spearman, Kendall (tau-b) and Pearson of each metric against human scores, with p-values and
    bootstrap 95 % CIs, overall and per group. 'agreement' is rho signed so that positive means the
    metric and the humans agree on which images are more anonymous (from each metric's declared
    direction), so you never have to remember that a low SSIM means 'more private'."""
    from ..assess.correlate import CorrelationOptions, correlate, iter_markdown

    try:
        options = CorrelationOptions(human=human, human_higher_is_private=not human_lower_is_private,
                                     by=tuple(b.strip() for b in by.split(",") if b.strip()), bootstrap=bootstrap, seed=seed)
        if not table.is_file():
            raise AnonlensError(f"table not found: {display_name(table)}")
        df = correlate(table, options, metrics=[m.strip() for m in metrics.split(",")] if metrics else None)
    except AnonlensError as exc:
        fail(str(exc))
    if output:
        write_atomic(output, df.to_csv(index=False).encode())
    if json_out:
        sys.stdout.write(df.to_json(orient="records", indent=2) + "\n")
        return
    for line in iter_markdown(df):
        out_console.print(escape(line), soft_wrap=True)
    out_console.print("agreement > 0: the metric ranks images as the humans do (sign from the metric's declared direction).")


@app.command("check")
def check_cmd(
    anonymized: Path = typer.Argument(..., help="Output folder of `anonlens anonymize` (its manifest gives the originals), or any folder with --original."),
    original: Optional[Path] = typer.Option(None, help="Folder of originals, paired by relative path, when ANONYMIZED has no manifest."),
    reviewed: Optional[Path] = typer.Option(None, help="Text file, one path per line: images a person has looked at and accepts (nothing-found, not-evaluated, person-without-face, or text-readable when every face passes)."),
    threshold: float = typer.Option(0.6, help="dlib's fixed threshold (tau): the tau criterion, and the second named rate reid_rate@tau."),
    residual_threshold: float = typer.Option(0.2, help="Face-detector score at or above which an anonymized face still counts as a face."),
    text: bool = typer.Option(True, "--text/--no-text", help="Check text (name tags, plates, signs): is it still detected, still readable? On by default (a name tag identifies a person); --keep-text regions of the run stay excluded."),
    people: bool = typer.Option(True, "--people/--no-people", help="Look for people (ssd-person) whose head area holds no face found in the original (a back turned, a face hidden or missed): such an image is person-without-face, for a person to review (--reviewed). Not for runs whose scope anonymized whole people."),
    criterion: str = typer.Option("rank1", "--criterion", help="rank1: re-identified when nearer its own original than every impostor (default); tau: nearer than the attacker's threshold; both: either."),
    attacker: Optional[List[str]] = typer.Option(None, "--attacker", help="A face recogniser that tries to re-identify each face, NAME[:key=value,...] (repeatable; default dlib; e.g. onnx:model=arcface.onnx). A face fails if any re-identifies it."),
    remeasure: bool = typer.Option(False, "--remeasure", help="Search every original for faces, text and people again, instead of reusing what the anonymize run found in it (reused only while the original is the same file, by sha256, measured the same way; the anonymized images are always measured)."),
    json_out: bool = typer.Option(False, "--json", help="Print the verdicts as JSON (every image, its verdict and problems)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Gate a data release: a verdict for every image, exit 0 only when every image passes.

    Faces are counted in the originals by every face detector (multi-scale CenterFace and dlib).
    Each face: can a recogniser measure it (its record says "measured by dlib", "not a face" or
    "unmeasurable pose")? A measured face is re-identified when an attacker puts it nearer its own
    original than every impostor (the release's other faces and a built-in gallery). Every face also
    fails when still detected as a face or left untouched. Verdicts, worst first: not-evaluated,
    re-identified, text-readable (legible text read back as in the original), residual-face,
    residual-text (still detected as text, when the run's scope had text), person-without-face (a
    person whose head area holds no face found, not reviewed), nothing-found (no face or legible text
    found and not reviewed), passed. Exit 1 when any image fails; every failing file is
    named. `anonlens anonymize` runs this same check on its outputs before writing them.
    """
    from ..assess.gate import manifest_pairs, parse_attacker

    if criterion not in ("rank1", "tau", "both"):
        fail(f"--criterion must be rank1, tau or both; got {criterion!r}")
    try:
        attackers = tuple(parse_attacker(a) for a in (attacker or ["dlib"]))
    except (AnonlensError, ValueError, TypeError) as exc:
        fail(one_line(str(exc)))
    try:
        if original is not None:
            pair_list, missing = pairs_from_dirs(anonymized, original), []
        else:
            pair_list, missing = manifest_pairs(anonymized)
        result = _gate_with_progress(pair_list, missing, reviewed, quiet, threshold=threshold, residual_threshold=residual_threshold,
                                     text=text, attackers=attackers, criterion=criterion, people=people, reuse=not remeasure)
    except AnonlensError as exc:
        fail(str(exc))
    summary = result.summary()
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for item in result.failing:
            out_console.print(f"[red]{item.verdict}[/] {escape(display_name(item.anonymized or item.original or item.key))}: "
                              f"{escape(one_line('; '.join(item.problems)))}")
        counts = ", ".join(f"{v} {n}" for v, n in summary["counts"].items() if n)
        rate = "n/a" if summary["reid_rate"] is None else f"{summary['reid_rate']:.3f}"
        tau_key = next((k for k in summary if k.startswith("reid_rate@")), None)
        tau_rate = "" if tau_key is None else f", {tau_key} {summary[tau_key]:.3f}"
        tests = ", ".join(f"{escape(k)}: {n}" for k, n in summary["identity_tests"].items())
        colour = "green" if result.verdict == "pass" else "red"
        out_console.print(f"[{colour}]{result.verdict.upper()}[/]: {len(result.failing)} of {summary['images']} image(s) fail ({counts}); "
                          f"{summary['faces']} face(s) in the originals ({tests}), re-identification rate {rate} "
                          f"({summary['faces_reidentified']} of {summary['faces_measured']} measured, {criterion}{tau_rate})"
                          + (f"; {summary['text_regions']} text region(s), {summary['text_readable']} still readable, "
                             f"{summary['text_still_detected']} still detected" if summary["text_checked"] else "")
                          + (f"; what the run found in {summary['originals_reused']} original(s) reused (--remeasure: search them again)"
                             if summary["originals_reused"] else ""))
    raise typer.Exit(0 if result.verdict == "pass" else 1)


@app.command("metrics")
def metrics_cmd() -> None:
    """List the assessment metrics, their direction and options."""
    rows = [[escape(e.name), e.tags["level"], "yes" if e.tags["full_reference"] else "no", e.tags["more_private"],
             escape(e.summary) + ("" if e.tags["offline"] else " [yellow](downloaded weights)[/]")] for e in METRICS.entries()]
    print_listing("metrics", ["name", "level", "needs original", "more private when", "what it measures"], rows)


@weights_app.command("list")
def weights_list(json_out: bool = typer.Option(False, "--json")) -> None:
    """Every known weights file, its licence and whether it is on this machine."""
    rows = []
    for spec in WEIGHTS.values():
        try:
            path, status = str(resolve_weights(spec, check_hash=False)), "present"
        except AnonlensError:
            path, status = "", "missing"
        rows.append({"name": spec.name, "file": spec.filename, "status": status, "path": path, "licence": spec.license, "url": spec.url})
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    print_listing("weights", ["name", "status", "file", "licence"],
                  [[escape(r["name"]), "[green]present[/]" if r["status"] == "present" else "[yellow]missing[/]", escape(r["file"]),
                    escape(r["licence"])] for r in rows])


@weights_app.command("path")
def weights_path(name: str = typer.Argument(..., help="Weights name (see `anonlens weights list`).")) -> None:
    """Print where a weights file is, or say what is missing and where to put it (exit 1)."""
    try:
        out_console.print(str(resolve_weights(name)), soft_wrap=True)
    except AnonlensError as exc:
        fail(str(exc), code=1)


@weights_app.command("verify")
def weights_verify() -> None:
    """Check the sha256 of every weights file present; exit 1 if one does not match."""
    bad = 0
    for spec in WEIGHTS.values():
        try:
            resolve_weights(spec, check_hash=False)
        except AnonlensError:
            out_console.print(f"{spec.name}: missing")
            continue
        try:
            path = resolve_weights(spec)
            out_console.print(f"{spec.name}: [green]ok[/] {escape(display_name(path))}" + ("" if spec.sha256 else " (no known hash)"))
        except AnonlensError as exc:
            bad += 1
            out_console.print(f"{spec.name}: [red]{escape(one_line(str(exc)))}[/]")
    raise typer.Exit(1 if bad else 0)


def _report_input_or_hint(scores: Path) -> None:
    """A folder without scores: one line saying what it is and the exact command that makes the
    scores (an ``anonymize`` output folder: ``score`` against the run's inputs, from its manifest)."""
    if not scores.is_dir() or (scores / "scores.csv").exists() or (scores / "scores.jsonl").exists():
        return
    try:
        manifest = json.loads(find_manifest(scores).read_text(encoding="utf-8"))
        inputs = manifest.get("inputs") or []
    except (AnonlensError, OSError, ValueError):
        manifest, inputs = None, []
    if manifest is not None:
        out = f"{scores}-scores"
        here = len(inputs) == 1 and Path(inputs[0]).exists()
        originals = shlex.quote(str(inputs[0])) if here else "ORIGINALS"
        read = "" if here else f" (the run read {', '.join(map(str, inputs)) or 'its inputs'}, as named from its folder)"
        fail(f"{display_name(scores)} holds anonymized images, not scores: run `anonlens score -a {shlex.quote(str(scores))} "
             f"--original {originals} -o {shlex.quote(out)}`{read}, then `anonlens report {shlex.quote(out)}` "
             f"(or `anonlens check {shlex.quote(str(scores))}` for the verdicts alone)")
    fail(f"{display_name(scores)}: no scores.csv here: run `anonlens score -a ANONYMIZED --original ORIGINALS -o {shlex.quote(str(scores))}` "
         "first (or `anonlens anonymize ... --assess`), then report on that folder")


@app.command("report")
def report_cmd(
    scores: Path = typer.Argument(..., help="Output folder of `anonlens score` (or of `anonymize --assess`: OUT.anonlens-audit/assessment)."),
    output: Path = typer.Option(Path("anonlens-report.html"), "--output", "-o", help="The HTML file to write."),
    human: Optional[str] = typer.Option(None, help="Human-score column for the scatter plots (default: score_mean when present)."),
    no_originals: bool = typer.Option(False, "--no-originals", help="Leave the original images out (a report with originals is personal data)."),
    manifest: Optional[Path] = typer.Option(None, help="An anonymize manifest, to draw the anonymized regions on the thumbnails (found by itself for `anonymize --assess` output)."),
    max_images: int = typer.Option(200, help="Show at most this many images (the most at risk first)."),
    gradcam: Optional[Path] = typer.Option(None, "--gradcam", help="A trained HA1/HA2 metric: add its Grad-CAM overlay for every image shown."),
    gradcam_target: str = typer.Option("lower", help="lower: what still gives the person away; raise: what makes the image look anonymous."),
    tradeoff: Optional[Path] = typer.Option(None, "--tradeoff", help="Output folder of `anonlens tradeoff`: add its plot and SSIM-at-matched-risk table."),
    gate: Optional[Path] = typer.Option(None, "--gate", help="The output of `anonlens check --json` to show, instead of running the release gate again."),
    reviewed: Optional[Path] = typer.Option(None, help="As for `anonlens check`: images a person has accepted (one path per line)."),
    no_gate: bool = typer.Option(False, "--no-gate", help="Do not run the release gate (no verdict at the top, no badges)."),
    text: bool = typer.Option(True, "--text/--no-text", help="As for `anonlens check`: readable text is part of the verdict (default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Write a self-contained HTML report: summary, group metrics, plots, and side-by-side
    thumbnails with per-image scores, the images most at risk first. Opens offline."""
    if gradcam is not None:
        require("learn", "anonlens report --gradcam")
    _report_input_or_hint(scores)
    from ..assess.report import write_report

    regions = None
    if manifest is None and scores.name in ("assessment", "anonlens-assessment"):  # anonymize --assess output
        try:
            manifest = find_manifest(scores.parent)
        except AnonlensError:
            manifest = None
    if manifest is not None:
        try:
            records = json.loads(manifest.read_text(encoding="utf-8"))["images"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            fail(f"{display_name(manifest)}: not a readable anonlens manifest ({exc})")
        regions = {r["output"]: [reg["box"] for reg in r.get("regions", [])] for r in records if r.get("output")}
    try:
        explain = None
        title = "Grad-CAM"
        if gradcam is not None:
            from ..learn.checkpoint import load_checkpoint
            from ..learn.explain import gradcam as _gradcam, overlay

            if gradcam_target not in ("lower", "raise"):
                fail("--gradcam-target must be lower or raise")
            cam_model, cam_config = load_checkpoint(gradcam)
            title = f"Grad-CAM ({'what still identifies' if gradcam_target == 'lower' else 'what looks anonymous'})"

            def explain(anon, orig):
                return overlay(anon, _gradcam(cam_model, cam_config, anon, orig if cam_config.ha == "HA2" else None, target=gradcam_target))
        sections = []
        if tradeoff is not None:
            from ..edi.tradeoff import section_html

            folder = tradeoff if tradeoff.is_dir() else tradeoff.parent
            try:
                doc = json.loads((folder / "tradeoff.json").read_text(encoding="utf-8"))
                sections.append(section_html(doc, (folder / "tradeoff.png").read_bytes()))
            except (OSError, json.JSONDecodeError, KeyError) as exc:
                fail(f"{display_name(folder)}: not a readable `anonlens tradeoff` output ({exc})")
        gate_doc = None
        if gate is not None:
            try:
                gate_doc = json.loads(gate.read_text(encoding="utf-8"))
                gate_doc["per_image"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
                fail(f"{display_name(gate)}: not the output of `anonlens check --json` ({exc})")
        elif not no_gate:
            gate_doc = _run_gate_for_report(scores, manifest, reviewed, quiet, text=text)
        path = write_report(scores, output, human=human, include_originals=not no_originals, max_images=max_images, regions=regions,
                            explain=explain, explain_title=title, sections=sections, gate=gate_doc)
    except AnonlensError as exc:
        fail(str(exc))
    out_console.print(f"report: {escape(display_name(path))}")
    if not no_originals:
        err_console.print("[yellow]note: the report contains thumbnails of the original images; use --no-originals to share it[/]")


def _run_gate_for_report(scores: Path, manifest: Optional[Path], reviewed: Optional[Path], quiet: bool, text: bool = True):
    """The release gate over the report's pairs (the manifest's, or the scores table's), or None
    when the table has no originals to compare with."""
    from ..assess.gate import manifest_pairs, pairs_from_scores

    pairs, missing = manifest_pairs(manifest) if manifest is not None else (pairs_from_scores(scores), [])
    if not pairs or any(p.original is None for p in pairs):
        return None
    return _gate_with_progress(pairs, missing, reviewed, quiet, text=text).to_dict()


def _gate_with_progress(pairs, missing, reviewed: Optional[Path], quiet: bool, **options):
    """:func:`anonlens.assess.gate.release_gate` with a progress bar (``check`` and ``report``)."""
    from ..assess.gate import read_reviewed, release_gate

    accepted = read_reviewed(reviewed) if reviewed is not None else set()
    progress = Progress(TextColumn("[bold]release gate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err_console, disable=quiet)
    with progress:
        task = progress.add_task("gate", total=len(pairs))
        return release_gate(pairs, reviewed=accepted, unevaluated=missing, progress=lambda n: progress.update(task, completed=n), **options)


@app.command("calibrate")
def calibrate_cmd(
    pairs: Path = typer.Argument(..., help="CSV with image_a, image_b, same (1/0): labelled match / non-match pairs."),
    root: Optional[Path] = typer.Option(None, help="Folder the image paths are relative to (default: the CSV's folder)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Find the identity-distance threshold with the best F1 on your labelled pairs; pass it to
    `anonlens score --threshold` and `anonlens check --threshold`."""
    from ..assess.calibrate import calibrate_from_csv

    try:
        result = calibrate_from_csv(pairs, root=root)
    except AnonlensError as exc:
        fail(str(exc))
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    out_console.print(f"threshold {result['threshold']:.4f} (F1 {result['f1']:.3f} on {result['pairs']} pairs, {result['matching']} matching)")
    for s in result["skipped"][:20]:
        out_console.print(f"  [yellow]skipped[/] {escape(one_line(s))}")
