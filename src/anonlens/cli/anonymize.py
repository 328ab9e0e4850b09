"""``anonlens anonymize`` and the commands around it (demo, detectors, operators, inspect): each
parses options, calls one library function and renders what it returns; the work itself lives in the
library (see :mod:`anonlens.batch`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..assess import pairs_from_manifest
from ..audit import AuditLayout
from ..detectors import DETECTORS
from ..display import display_name, one_line
from ..errors import AnonlensError
from ..io import container_segments, metadata_segments
from ..metrics import DEFAULT_METRICS
from ..operators import OPERATORS
from ..pipeline import AnonymizeConfig, cached_anonymizer
from ..video.anonymize import VideoOptions
from .kit import (ENGINE_HELP, ENGINE_OPTION_HELP, EXIT_REVIEW, RAY_ADDRESS_HELP, app, err_console, fail, make_engine,
                  out_console, parse_options, print_listing, print_score_summary, run_score)


@app.command("anonymize")
def anonymize_cmd(
    inputs: List[Path] = typer.Argument(..., help="Image and video files and/or folders (searched recursively). Videos (mp4, m4v, mov, mkv, avi, webm) need pip install 'anonlens\\[video]'.", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Release folder: only the anonymized images go here, mirroring the input tree. New or empty (see --resume, --overwrite); never inside an input folder nor around one."),
    scope: str = typer.Option("face", help="What to anonymize: face; person (faces and whole bodies: every face the face detector finds, plus the body detector's people); body (the body detector's people, plus every face found in the output); image (the whole frame); text (name tags, plates, signs, screens, documents). Combine text with one of the others: face,text (portraits with name tags; street imagery: faces and plates), person,text; all = person,text."),
    keep_text: Optional[str] = typer.Option(None, "--keep-text", help="With a text scope: leave readable the text regions whose recognised text matches this regular expression entirely (e.g. 'EXIT|STOP'); recognition runs only then. Default: every text region is anonymized."),
    detector: Optional[str] = typer.Option(None, help="Detector name (see `anonlens detectors`). Default: centerface for faces, ssd-person for bodies."),
    threshold: Optional[float] = typer.Option(None, help="Detector score threshold (detector's default if omitted)."),
    boxes: Optional[Path] = typer.Option(None, help="Your own regions: JSON or CSV of boxes/polygons per image (uses the 'boxes' detector)."),
    masks: Optional[Path] = typer.Option(None, help="Your own regions: folder of mask images mirroring the inputs (uses the 'boxes' detector)."),
    detector_option: Optional[List[str]] = typer.Option(None, "--detector-option", "-d", help="Detector option key=value (repeatable), e.g. -d max_side=1280."),
    operator: str = typer.Option("blur", help="Perturbation: blur, pixelate, mask, noise, dp-pix, inpaint (see `anonlens operators`)."),
    operator_option: Optional[List[str]] = typer.Option(None, "--operator-option", "-p", help="Operator option key=value (repeatable), e.g. -p strength=0.3 or -p blocks=6."),
    seed: Optional[int] = typer.Option(None, help="Seed for random operators (noise, dp-pix). Default: unpredictable noise."),
    shape: Optional[str] = typer.Option(None, help="Region shape: ellipse, box, mask or auto. Default: ellipse for faces, box for bodies."),
    margin: Optional[float] = typer.Option(None, help="Grow each region by this fraction of its size on every side. Default: 0.25 faces, 0.05 bodies."),
    on_empty: Optional[str] = typer.Option(None, help="When nothing is found: keep (copy unchanged), skip (write nothing), full (anonymize the whole image). Default: keep, name every such image and end with exit code 3 (review needed); choosing a policy explicitly is respected (exit 0)."),
    on_damaged: str = typer.Option("review", "--on-damaged", help="When the decoder reports errors in a file (a damaged input: corrupt JPEG data, video packets that fail to decode): review (anonymize what could be decoded, name the file on screen and in the manifest, end with exit code 3), accept (the same, exit 0) or fail (no output for it, exit code 1)."),
    on_text: str = typer.Option("review", "--on-text", help="Scopes without text: the last verification reads the text of each photo (a name tag identifies a person; `check` fails legible text). review: name every image whose output still has legible text, on screen and in the manifest, end with exit code 3; accept: the same, exit 0. Use --scope face,text to anonymize the text."),
    on_faceless: str = typer.Option("review", "--on-faceless", help="Face scopes: the last verification also looks for people (ssd-person) whose head area holds no face found (a back turned, a face hidden or missed: the person may still be recognised). review: name every such image with the people's boxes, on screen and in the manifest, end with exit code 3; accept: the same, exit 0. Use --scope person to anonymize whole people."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Do not verify the outputs: by default a region that still detects as a face, and then (once every operator ran) a face the release gate's own check still fails (re-identified, still detected, untouched), is anonymized more strongly, then masked; a face failing under the mask fails its image (no output, exit 1)."),
    keep_metadata: bool = typer.Option(False, "--keep-metadata", help="Keep an allow-list of harmless EXIF tags (camera, lens, exposure, date; orientation reset to 1) and the colour profile. Never thumbnails, GPS, XMP, IPTC, maker notes, serial numbers or names; checked again after encoding. Default: strip everything."),
    detect_every: int = typer.Option(1, "--detect-every", min=1, max=5, help="Videos: run the detectors on every N-th frame only; tracks carry regions between, and new tracks are covered back to 4 frames before their first detection. Faster; a face visible for fewer than N frames can be missed. Default 1: every frame."),
    person_every: int = typer.Option(3, "--person-every", min=1, max=5, help="Videos with --scope person or body: run the person detector on every N-th detection frame (key frames; faces and text on every one); the tracker carries people between, and a person first seen on a key frame is covered back to 4 frames before. 1: every frame."),
    keep_audio: bool = typer.Option(False, "--keep-audio", help="Videos: copy the first audio stream unchanged (default: audio is dropped; voices identify people too)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run recorded for OUTPUT: its outputs are rewritten or removed; the run history keeps its record."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run recorded for OUTPUT (interrupted or finished) with the same options: an image is skipped when its input is unchanged and its output still has the recorded hash; anything else is redone."),
    workers: int = typer.Option(0, "--workers", "-j", help="Parallel worker processes; 0 = automatic: one process for detectors that use every core themselves (centerface), else one per CPU core. With --engine ray: the CPUs of the Ray started here (0: all)."),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    engine_option: Optional[List[str]] = typer.Option(None, "--engine-option", "-E", help=ENGINE_OPTION_HELP),
    max_pixels: int = typer.Option(100_000_000, min=1, help="Refuse images with more pixels than this (decompression-bomb guard; files over 8 bytes per pixel + 64 MiB are not read)."),
    jpeg_quality: int = typer.Option(95, min=1, max=100, help="Quality of JPEG/WebP outputs."),
    audit: Optional[Path] = typer.Option(None, "--audit", help="Folder for the run's private records (manifest with original paths and hashes, run history, --assess scores). Default: OUTPUT.anonlens-audit beside OUTPUT. Never inside OUTPUT."),
    method: str = typer.Option("uniform", help="uniform: the operator over each whole face/person. edi: EDI-Anon, perturb only the pixels that reveal the identity, re-check, repeat until an identity model no longer recognises the person."),
    target_risk: float = typer.Option(0.01, help="EDI: the re-identification rate to reach; the exit code is 1 when the final rate is above it."),
    q: float = typer.Option(90.0, "--q", help="EDI: perturb the elements at or above this percentile of identity saliency per iteration (the reference: 90; 99 for masking)."),
    max_iters: int = typer.Option(20, help="EDI: iterations per face before giving up (then the whole face gets the operator, unless -e on_fail=keep)."),
    saliency: str = typer.Option("auto", help="EDI: occlusion or rise (black-box, any oracle), gradient (white-box: a classifier, or dlib's network on the torch engine) or gradcam (classifier). auto: occlusion for dlib's model (gradient fools the network with scattered changes a person sees through), gradient with --oracle-model."),
    oracle_model: Optional[Path] = typer.Option(None, help="EDI: identity classifier from `anonlens train-identity` as the attacker (white-box). Default: dlib's face-identity model."),
    edi_option: Optional[List[str]] = typer.Option(None, "--edi-option", "-e", help="EDI option key=value (repeatable): threshold=0.6 (dlib distance), windows=4 (occlusion), masks=32 (rise), on_fail=uniform|keep, refresh=1, select=reference|fresh, attribute_model=CKPT (is the age/gender... kept), device=cpu."),
    assess: bool = typer.Option(False, "--assess", help="Then score the outputs against the inputs (identity risk, residual detectability, SSIM, ...) and add the result to the manifest."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Anonymize every face (or person, text, or whole image) in the photos and videos of INPUTS and write the results to OUTPUT.

    Inputs are never modified. Each output is written atomically, without metadata, in the format its name says. An image that fails (unreadable, detector or operator error) gets no output at all, and the exit code is 1. OUTPUT holds only anonymized images: the manifest (per image the regions found, every parameter and both files' hashes), the run history and --assess scores go to the audit folder beside it, which links the release to the originals: keep it private.

    Exit codes: 0 done; 1 an image failed, a region-file key matched no input, OUTPUT holds files this run did not write, or the audit folder could not be written (--resume completes the run); 2 usage or a refused run (nothing touched); 3 review needed (nothing found, a damaged input, text found in the output of a scope without text: see --on-text, or a person with no face found: see --on-faceless). 
    """
    from ..batch import BatchOptions, run_batch

    if boxes is not None or masks is not None:
        if detector not in (None, "boxes"):
            fail("--boxes/--masks use the 'boxes' detector; drop --detector")
        detector = "boxes"
    # option values are read by the types the detector and operator declare (one grammar with the service)
    det_opts = parse_options(detector_option, "detector", target=_entry(DETECTORS, _detector_name(scope, detector)))
    op_opts = parse_options(operator_option, "operator", target=_entry(OPERATORS, operator))
    if boxes is not None:
        det_opts["file"] = str(boxes)
    if masks is not None:
        det_opts["masks"] = str(masks)
    if threshold is not None:
        if "threshold" in det_opts:
            fail("--threshold and -d threshold=... are both given; keep one")
        det_opts["threshold"] = threshold
    if seed is not None:
        if "seed" in op_opts:
            fail("--seed and -p seed=... are both given; keep one")
        op_opts["seed"] = seed
    if overwrite and resume:
        fail("--overwrite and --resume exclude each other")
    if on_damaged not in ("review", "accept", "fail"):
        fail(f"--on-damaged must be review, accept or fail; got {on_damaged!r}")
    if on_text not in ("review", "accept"):
        fail(f"--on-text must be review or accept; got {on_text!r}")
    if on_faceless not in ("review", "accept"):
        fail(f"--on-faceless must be review or accept; got {on_faceless!r}")
    method_opts: dict[str, Any] = {}
    if method == "edi":
        method_opts = {"target_risk": target_risk, "q": q, "max_iters": max_iters, "saliency": saliency,
                       **parse_options(edi_option, "EDI")}
        if oracle_model is not None:
            method_opts.update(oracle="classifier", model=str(oracle_model))
    elif edi_option or oracle_model is not None:
        fail("--edi-option and --oracle-model need --method edi")
    try:
        config = AnonymizeConfig(
            scope=scope,  # type: ignore[arg-type]
            detector=detector,
            detector_options=det_opts,
            operator=operator,
            operator_options=op_opts,
            shape=shape,  # type: ignore[arg-type]
            margin=margin,
            on_empty=on_empty or "keep",  # type: ignore[arg-type]
            method=method,  # type: ignore[arg-type]
            method_options=method_opts,
            verify=not no_verify,
            keep_text=keep_text,
        )
        # Build the detector and operator once here, so that a wrong name or option, or missing
        # weights, is one clear error before any file is touched.
        cached_anonymizer(config)
        options = BatchOptions(
            config=config,
            keep_metadata=keep_metadata,
            max_pixels=max_pixels,
            jpeg_quality=jpeg_quality,
            overwrite=overwrite,
            resume=resume,
            workers=workers,
            video=VideoOptions(keep_audio=keep_audio, detect_every=detect_every, person_every=person_every),
            on_damaged=on_damaged,
        )
        runner = make_engine(engine, ray_address, workers, engine_option)
        with runner:
            report = _run_with_progress(run_batch, inputs, output, options, audit, quiet, runner)
    except AnonlensError as exc:
        fail(str(exc), code=getattr(exc, "exit_code", 2))  # an audit folder that cannot be written: 1
    if not (json_out and assess):  # with both, one JSON document is printed at the end
        _print_summary(report, json_out)
    assessment = None
    if assess:
        try:
            assessment = assess_anonymize_run(report, quiet, json_out)
        except AnonlensError as exc:
            fail(str(exc), code=1)
        if json_out:
            sys.stdout.write(json.dumps({**_report_payload(report), "assessment": None if assessment is None else assessment.summary},
                                        indent=2, default=str) + "\n")
    edi_ok = True
    edi = report.edi_summary()
    if edi is not None:
        edi_ok = edi["final_reid_rate"] <= target_risk
        if not json_out:
            _print_edi(edi, target_risk)
    if not (report.ok and edi_ok and (assessment is None or not assessment.errors)):
        raise typer.Exit(1)
    if on_empty is None and report.nothing_found:
        raise typer.Exit(EXIT_REVIEW)  # nothing found, default policy: a person must look first
    if on_damaged == "review" and report.damaged:
        raise typer.Exit(EXIT_REVIEW)  # decoded with errors: a person must look at what was made of it
    if on_text == "review" and report.text_found:
        raise typer.Exit(EXIT_REVIEW)  # text left in the output (a scope without text): the gate fails it
    if on_faceless == "review" and report.people_without_faces:
        raise typer.Exit(EXIT_REVIEW)  # a person with no face found: the gate asks for a review too
    raise typer.Exit(0)


def _entry(registry, name: str | None):
    """The registry entry named ``name`` (None when unknown: the registry's own error comes later)."""
    return registry.get(name) if name is not None and name in registry else None


def _detector_name(scope: str, detector: str | None) -> str | None:
    """The detector a run with ``scope`` and ``--detector`` uses (None: no detector, or a bad scope)."""
    if detector is not None:
        return detector
    try:
        return AnonymizeConfig(scope=scope).detector_name  # type: ignore[arg-type]
    except (AnonlensError, ValueError):
        return None  # the config's own error is raised with every option below


def _print_edi(edi: dict[str, Any], target: float) -> None:
    curve = edi["reid_rate_per_iteration"]
    table = Table(title="EDI: re-identification rate per iteration", header_style="bold")
    table.add_column("iteration", justify="right")
    table.add_column("re-identified", justify="right")
    for i, r in enumerate(curve):
        table.add_row("before" if i == 0 else str(i), f"{100 * r:.1f} %")
    out_console.print(table)
    final = edi["final_reid_rate"]
    style = "green" if final <= target else "red"
    out_console.print(
        f"faces: {edi['faces']}, mean iterations {edi['mean_iterations']}, mean share of the face changed "
        f"{100 * edi['mean_changed_share']:.1f} %, mean SSIM inside the face {edi['mean_ssim_region']}"
        + (f", attribute kept for {100 * edi['attribute_agreement']:.1f} %" if "attribute_agreement" in edi else "")
    )
    for w in edi.get("warnings", []):
        shown = "" if w["distance"] is None else f" (identity distance {w['distance']:.3f})"
        out_console.print(f"[yellow]warning[/] {escape(display_name(w['input']))} face at {w['box']}: {escape(one_line(w['why']))}{shown}")
    out_console.print(f"[{style}]final re-identification rate {100 * final:.2f} % (target {100 * target:.2f} %)[/]")


#: without a terminal, a progress line at most this often
PLAIN_PROGRESS_SECONDS = 5.0


def _run_with_progress(run_batch, inputs, output, options, audit, quiet, engine=None):
    progress = Progress(
        TextColumn("[bold]anonymizing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=False,
    )
    # without a terminal (CI, nohup, a pipe): a plain line at most every PLAIN_PROGRESS_SECONDS
    plain = None if quiet or err_console.is_terminal else {"last": time.perf_counter(), "start": time.perf_counter()}
    state: dict[str, Any] = {"task": None, "failed": 0, "frames": None, "video": None, "t0": 0.0, "done": 0, "total": 0}

    def say(line: str) -> None:
        now = time.perf_counter()
        if plain is not None and now - plain["last"] >= PLAIN_PROGRESS_SECONDS:
            plain["last"] = now
            err_console.print(escape(one_line(line)), highlight=False)

    def on_start(total: int) -> None:
        state["total"] = total
        state["task"] = progress.add_task("anonymize", total=total, info="0 failed")

    def on_frame(video: str, done: int, total: int) -> None:
        if state["video"] != video:  # a new video: its own bar, by frames, with frames per second
            if state["frames"] is not None:
                progress.remove_task(state["frames"])
            state["video"], state["t0"] = video, time.perf_counter()
            state["frames"] = progress.add_task("frames", total=total or None, info=escape(display_name(Path(video).name)))
        fps = done / max(time.perf_counter() - state["t0"], 1e-9)
        progress.update(state["frames"], completed=done, info=f"{escape(display_name(Path(video).name))}: {fps:.1f} frames/s")
        say(f"anonymizing {display_name(Path(video).name)}: frame {done}" + (f" of {total}" if total else "") + f", {fps:.1f} frames/s")

    def on_record(rec: dict[str, Any]) -> None:
        if rec["status"] == "failed":
            state["failed"] += 1
            progress.console.print(f"[red]failed[/] {escape(one_line(rec['error']) if rec.get('error') else display_name(rec['input']))}")
        progress.update(state["task"], advance=1, info=f"{state['failed']} failed")
        state["done"] += 1
        if plain is not None:
            rate = state["done"] / max(time.perf_counter() - plain["start"], 1e-9)
            say(f"anonymizing: {state['done']} of {state['total']} files, {state['failed']} failed, {rate:.2f} files/s")

    with progress:
        return run_batch(inputs, output, options, audit_dir=audit, progress=on_record, on_start=on_start, on_frame=on_frame,
                         engine=engine)


def _speed(summary: dict[str, Any]) -> str:
    """The run's speed in its unit: images/s for photos, frames/s for videos (both for a mix)."""
    parts = []
    photos = summary["images"] - summary["videos"]
    if photos > 0 and summary["frames"] == 0:
        parts.append(f"{summary['images_per_second']:.2f} images/s")
    elif photos > 0:
        parts.append(f"{photos} photos")
    if summary["frames"]:
        parts.append(f"{summary['frames']} frames of {summary['videos']} video(s), {summary['frames_per_second']:.2f} frames/s")
    return "; ".join(parts) if parts else "nothing processed"


def _report_payload(report) -> dict[str, Any]:
    return {
        "summary": report.summary(),
        "run_id": report.run_id,
        "manifest": str(report.manifest_path),
        "audit_dir": str(report.audit_dir),
        **report.lists(),
    }


def _listing(title: str, items: list[str], style: str, limit: int = 20) -> None:
    if not items:
        return
    out_console.print(f"[{style}]{escape(one_line(title))}[/]" if style else escape(one_line(title)))
    for item in items[:limit]:  # names come as display_name(...); one_line: no item is ever two lines
        out_console.print(f"  {escape(one_line(item))}")
    if len(items) > limit:
        out_console.print(f"  ... and {len(items) - limit} more (all in the manifest)")


def _print_summary(report, json_out: bool) -> None:
    summary = report.summary()
    if json_out:
        sys.stdout.write(json.dumps(_report_payload(report), indent=2) + "\n")
        return
    table = Table(title="anonlens anonymize", show_header=True, header_style="bold")
    table.add_column("result")
    table.add_column("files", justify="right")
    labels = {
        "anonymized": "anonymized",
        "kept": "nothing found, copied unchanged (review!)",
        "full-frame": "nothing found, whole image anonymized",
        "skipped": "nothing found, not written",
        "resumed": "already done, output verified (resumed)",
        "ignored": "not read (not an image, link or special file)",
        "failed": "FAILED, no output written",
    }
    for key, label in labels.items():
        if summary[key]:
            style = "red" if key == "failed" else ("yellow" if key in ("kept", "full-frame", "skipped") else "")
            table.add_row(f"[{style}]{label}[/]" if style else label, str(summary[key]))
    table.add_row("regions anonymized", str(summary["regions"]))
    table.add_row("time", f"{summary['seconds']:.1f} s" + (f" ({_speed(summary)})" if summary["seconds"] > 0 else ""))
    out_console.print(table)
    _listing(f"Nothing was found in {len(report.nothing_found)} image(s); review them:", [display_name(n) for n in report.nothing_found],
             "yellow")
    damaged = [f"{display_name(d['input'])}: {one_line(d['errors'][0])}" + (" (more in the manifest)" if len(d["errors"]) > 1 else "")
               for d in report.damaged]
    _listing(f"{len(report.damaged)} file(s) were decoded with errors (damaged input; anonymized from what could be decoded); "
             "review them:", damaged, "yellow")
    verified = report.verification_summary()
    if verified["strengthened"] or verified["masked"] or verified["found_by_verification"]:
        out_console.print(
            f"[yellow]verification: {verified['strengthened']} region(s) still detected as a face and were anonymized more strongly, "
            f"{verified['masked']} were masked, {verified['found_by_verification']} face(s) found in the output were anonymized[/]"
        )
    _listing(f"Text was found in {len(report.text_found)} output(s) (the scope has no text; a name tag identifies a person); "
             "review them, or anonymize it with --scope face,text:",
             [f"{display_name(t['input'])}: {len(t['boxes'])} text region(s), e.g. at {t['boxes'][0]}" for t in report.text_found], "yellow")
    _listing(f"People with no face found in {len(report.people_without_faces)} image(s) (a back turned, a face hidden or missed: "
             "they may still be recognised); review them, or anonymize whole people with --scope person:",
             [f"{display_name(p['input'])}: {len(p['boxes'])} person(s), e.g. at {p['boxes'][0]}" for p in report.people_without_faces], "yellow")
    _listing(f"{len(report.ignored)} file(s) not read:", [f"{display_name(r['input'])}: {r['reason']}" for r in report.ignored], "yellow")
    _listing(f"{len(report.replaced)} output(s) had changed since their run and were anonymized again:",
             [r["why"] for r in report.replaced], "yellow")
    _listing(f"{len(report.removed)} output(s) of the replaced run were removed:", [display_name(n) for n in report.removed], "")
    _listing(f"{len(report.failed)} image(s) failed; nothing was written for them:", [r.get("error") or display_name(r["input"]) for r in report.failed], "red")
    _listing(f"{len(report.unmatched_regions)} region key(s) match no input (their regions were not used):", [display_name(k) for k in report.unmatched_regions], "red")
    _listing(f"{len(report.foreign)} file(s) in the output folder were not written by this run; remove them before publishing:",
             [display_name(n) for n in report.foreign], "red")
    out_console.print(f"release folder (only anonymized images): {escape(display_name(report.output_dir))}")
    out_console.print(f"audit records (private: they link the release to the originals): {escape(display_name(report.audit_dir))}")
    out_console.print(f"manifest: {escape(display_name(report.manifest_path))}")


@app.command("demo")
def demo_cmd(
    output: Path = typer.Option(Path("anonlens-demo"), "--output", "-o", help="Folder for the sample inputs, outputs and manifest."),
    operator: str = typer.Option("blur", help="Perturbation to demonstrate."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run the main job on built-in public-domain sample photos (scikit-image's astronaut and cameraman): faces and text (the astronaut's name tag), verified as `anonlens check` verifies."""
    from ..batch import BatchOptions, run_batch
    from ..samples import write_samples

    inputs = output / "input"
    anonymized = output / "anonymized"
    write_samples(inputs)
    options = BatchOptions(config=AnonymizeConfig(scope="face,text", operator=operator), overwrite=True)
    try:
        report = _run_with_progress(run_batch, [inputs], anonymized, options, None, quiet)
    except AnonlensError as exc:
        fail(str(exc))
    _print_summary(report, False)
    out_console.print(f"sample inputs: {escape(display_name(inputs))}\nanonymized:    {escape(display_name(anonymized))}")
    raise typer.Exit(0 if report.ok else 1)


def _range_text(text: str) -> str:
    return text if text[0] in "[(" else f"({text})"


def _print_registry(registry, title: str) -> None:
    rows = []
    for entry in registry.entries():
        opts = ", ".join(f"{k}={v!r}" + (f" {_range_text(entry.ranges[k].text)}" if k in entry.ranges else "")
                         for k, v in entry.options().items())
        rows.append([escape(entry.name), escape(entry.summary.replace("``", "")), escape(opts)])
    print_listing(title, ["name", "what it does", "options (default, accepted range)"], rows)


@app.command("detectors")
def detectors_cmd() -> None:
    """List the detectors and their options."""
    _print_registry(DETECTORS, "detectors")


@app.command("operators")
def operators_cmd() -> None:
    """List the anonymization operators and their options."""
    _print_registry(OPERATORS, "operators")


@app.command("inspect")
def inspect_cmd(files: List[Path] = typer.Argument(..., help="Image files to check for metadata.")) -> None:
    """Show the metadata segments (EXIF, XMP, IPTC, ICC profiles, comments, text chunks) a file carries, and any data after the end of the image (a second image appended to a JPEG, PNG, WebP, TIFF or BMP) or that a TIFF's structure does not reference. Exit 1 if any."""
    dirty = 0
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as exc:
            fail(f"{display_name(f)}: {exc.strerror or exc}")
        fmt, segments = container_segments(data)
        meta = metadata_segments(data)
        dirty += bool(meta)
        verdict = f"[red]metadata: {escape(', '.join(meta))}[/]" if meta else "[green]no metadata[/]"
        out_console.print(f"{escape(display_name(f))} ({fmt}): {verdict}")
    raise typer.Exit(1 if dirty else 0)


def assess_anonymize_run(report, quiet: bool, json_out: bool):
    """`anonymize --assess`: score the run's own outputs into the audit folder (never the
    release folder: the scores name the originals), add the result to the run's manifest."""
    pairs = pairs_from_manifest(report.manifest_path)
    if not pairs:
        return None
    layout = AuditLayout(report.audit_dir)
    result = run_score(pairs, layout.assessment, DEFAULT_METRICS, (), quiet=quiet)
    layout.amend(report.run_id, assessment={"summary": result.summary, "metrics": result.metrics,
                                            "table": str(result.table_csv), "errors": result.errors})
    if not json_out:
        print_score_summary(result, False)
    return result
