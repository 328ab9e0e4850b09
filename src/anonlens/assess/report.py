"""A self-contained HTML report of a scoring run: open it offline in any browser.

Thumbnails are embedded as base64 JPEG; plots are inline SVG (no JavaScript, no network, no
plotting library). Every string from files is HTML-escaped. The report shows the original images
unless ``include_originals=False``: a report with originals is personal data, and says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from ..errors import AnonlensError
from ..io import atomic_writer, read_image
from ..metrics import column_directions, utility_columns

__all__ = ["write_report", "risk_order", "svg_histogram", "svg_scatter"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1rem auto;padding:0 1rem;color:#222;max-width:1200px}
h1{font-size:1.5rem} h2{font-size:1.2rem;margin-top:2rem}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.6rem 1rem;border-radius:4px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.8rem} td,th{border-bottom:1px solid #ddd;padding:.25rem .4rem;text-align:right;vertical-align:top}
th{background:#f4f4f4;word-break:break-word;max-width:7rem;font-weight:600} td.l,th.l{text-align:left} .risk{background:#fde2e2}
th.u{background:#e8f1fb}
td.key{max-width:14rem;word-break:break-all}
img{display:block;max-width:180px;height:auto;border:1px solid #ccc}
.plots{display:flex;flex-wrap:wrap;gap:1.5rem} figure{margin:0} figcaption{font-size:.8rem;color:#555}
.verdict{font-size:1.3rem;padding:.6rem 1rem;border-radius:4px;font-weight:700}
.pass{background:#d4edda;color:#155724} .fail{background:#f8d7da;color:#721c24}
.badge{display:inline-block;padding:.05rem .4rem;border-radius:3px;font-size:.75rem;font-weight:700;color:#fff;background:#b00020;white-space:nowrap}
.badge.passed{background:#2e7d32} .badge.nothing-found,.badge.not-evaluated{background:#b26a00}
.note{color:#666;font-style:italic}
"""


def _thumb(path, size: int, boxes: Sequence[Sequence[float]] = ()) -> str:
    """A base64 JPEG thumbnail (of a file, or of an RGB array) with ``boxes`` (in the image's
    pixels) drawn in red."""
    rgb = path if isinstance(path, np.ndarray) else read_image(path).rgb
    f = size / max(rgb.shape[:2])
    if f < 1:
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))), interpolation=cv2.INTER_AREA)
    else:
        f = 1.0
        rgb = rgb.copy()
    for b in boxes:
        x1, y1, x2, y2 = (int(round(v * f)) for v in b[:4])
        cv2.rectangle(rgb, (x1, y1), (x2, y2), (230, 30, 30), 2)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def risk_order(df, failing: Collection[str] = ()) -> list[int]:
    """Row positions, the images most at risk first: those the release gate does not pass
    (``failing``: their anonymized paths), then still re-identified, then the smallest identity
    distance, then the highest residual face score, then the highest SSIM."""
    def key(i: int):
        r = df.iloc[i]
        gate_fails = str(r.get("anonymized", "")) in failing

        def num(col, default):
            v = r.get(col) if col in df.columns else None
            try:
                v = float(v)
            except (TypeError, ValueError):
                return default
            return default if math.isnan(v) else v

        reid = str(r.get("reidentified", "")).lower() == "true"
        dist = min(num("identity_distance", 9.0), num("identity_distance_at_position", 9.0))
        return (not gate_fails, not reid, dist, -num("residual_face_score", 0.0), -num("ssim", 0.0))

    return sorted(range(len(df)), key=key)


def svg_histogram(values: Sequence[float], *, title: str, marker: float | None = None, bins: int = 20, width: int = 420, height: int = 220) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return ""
    lo, hi = float(v.min()), float(v.max())
    if marker is not None:
        lo, hi = min(lo, marker), max(hi, marker)
    hi = hi if hi > lo else lo + 1.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    pad, w, h = 30, width - 40, height - 50
    top = max(int(counts.max()), 1)
    bars = []
    for c, e0, e1 in zip(counts, edges[:-1], edges[1:]):
        x = pad + (e0 - lo) / (hi - lo) * w
        bw = max((e1 - e0) / (hi - lo) * w - 1, 1)
        bh = c / top * h
        bars.append(f'<rect x="{x:.1f}" y="{10 + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" fill="#4a78c2"/>')
    if marker is not None:
        mx = pad + (marker - lo) / (hi - lo) * w
        bars.append(f'<line x1="{mx:.1f}" y1="10" x2="{mx:.1f}" y2="{10 + h}" stroke="#c00" stroke-dasharray="4"/>')
        bars.append(f'<text x="{mx + 3:.1f}" y="22" font-size="11" fill="#c00">{marker:g}</text>')
    axis = (f'<line x1="{pad}" y1="{10 + h}" x2="{pad + w}" y2="{10 + h}" stroke="#333"/>'
            f'<text x="{pad}" y="{h + 26}" font-size="11">{lo:.3g}</text>'
            f'<text x="{pad + w}" y="{h + 26}" font-size="11" text-anchor="end">{hi:.3g}</text>'
            f'<text x="{pad - 4}" y="18" font-size="11" text-anchor="end">{top}</text>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(bars)}{axis}</svg>'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def svg_scatter(x: Sequence[float], y: Sequence[float], *, title: str, xlabel: str, ylabel: str, width: int = 320, height: int = 260) -> str:
    pts = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and np.isfinite(a) and np.isfinite(b)]
    if len(pts) < 2:
        return ""
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    pad, w, h = 40, width - 55, height - 60
    def sx(v): return pad + (v - xs.min()) / ((xs.max() - xs.min()) or 1) * w
    def sy(v): return 10 + h - (v - ys.min()) / ((ys.max() - ys.min()) or 1) * h
    dots = "".join(f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="2.5" fill="#4a78c2" fill-opacity=".6"/>' for a, b in pts)
    axes = (f'<line x1="{pad}" y1="{10 + h}" x2="{pad + w}" y2="{10 + h}" stroke="#333"/>'
            f'<line x1="{pad}" y1="10" x2="{pad}" y2="{10 + h}" stroke="#333"/>'
            f'<text x="{pad}" y="{h + 24}" font-size="10">{xs.min():.3g}</text>'
            f'<text x="{pad + w}" y="{h + 24}" font-size="10" text-anchor="end">{xs.max():.3g}</text>'
            f'<text x="{pad - 3}" y="{10 + h}" font-size="10" text-anchor="end">{ys.min():.3g}</text>'
            f'<text x="{pad - 3}" y="18" font-size="10" text-anchor="end">{ys.max():.3g}</text>'
            f'<text x="{pad + w / 2}" y="{h + 40}" font-size="11" text-anchor="middle">{html.escape(xlabel)}</text>'
            f'<text x="10" y="{10 + h / 2}" font-size="11" transform="rotate(-90 10 {10 + h / 2})" text-anchor="middle">{html.escape(ylabel)}</text>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{dots}{axes}</svg>'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.4g}")
    return html.escape(str(v))


def _cell(row, col: str) -> str:
    """A table cell; an empty identity distance says why (no face found in the output)."""
    v = row[col]
    if col == "identity_distance" and isinstance(v, float) and math.isnan(v) and str(row.get("orig_face_found", "")).lower() == "true":
        return "<span class='note'>no face found in the output</span>"
    return _fmt(v)


def write_report(
    score_dir: str | Path,
    output: str | Path,
    *,
    human: str | None = None,
    include_originals: bool = True,
    max_images: int = 200,
    thumb_size: int = 256,
    regions: dict[str, list] | None = None,
    explain: "Callable | None" = None,
    explain_title: str = "Grad-CAM",
    sections: Sequence[str] = (),
    gate: dict[str, Any] | None = None,
) -> Path:
    """Write the HTML report of the `anonlens score` output in ``score_dir`` to ``output``.

    ``regions`` maps an anonymized path to the boxes to draw on it (from an anonymize manifest);
    without it, no boxes are drawn. ``explain(anonymized_rgb, original_rgb_or_None) -> overlay
    RGB`` adds a column of explanation overlays (e.g. Grad-CAM of a learned metric). ``sections``
    are trusted HTML fragments added before the images (e.g. the EDI trade-off). ``gate`` is the
    release gate's result (:meth:`anonlens.assess.gate.GateResult.to_dict`, what ``anonlens check
    --json`` prints): its verdict heads the report and every image gets its badge.
    """
    score_dir = Path(score_dir)
    table = score_dir / "scores.csv"
    if not table.is_file():
        raise AnonlensError(f"no scores.csv in {score_dir}; run `anonlens score -o {score_dir}` first")
    df = pd.read_csv(table, keep_default_na=True)
    summary = {}
    if (score_dir / "summary.json").is_file():
        summary = json.loads((score_dir / "summary.json").read_text(encoding="utf-8"))
    directions = column_directions()
    metric_cols = [c for c in df.columns if c in directions and c != "reidentified"]
    if human is None and "score_mean" in df.columns:
        human = "score_mean"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>anonlens report</title><style>{_CSS}</style></head><body>",
             "<h1>anonlens assessment report</h1>"]
    per_image: dict[str, dict[str, Any]] = {}
    if gate is not None:
        per_image = {str(i.get("anonymized")): i for i in gate.get("per_image", [])}
        counts = ", ".join(f"{html.escape(k)}: {v}" for k, v in gate.get("counts", {}).items() if v)
        verdict = str(gate.get("verdict", "fail"))
        parts.append(f"<p class='verdict {'pass' if verdict == 'pass' else 'fail'}'>Release verdict: {html.escape(verdict.upper())}"
                     f" &mdash; {len(gate.get('failing', []))} of {gate.get('images', 0)} image(s) fail ({counts})</p>")
        if gate.get("faces"):
            rate = gate.get("reid_rate")
            tau_key = next((k for k in gate if str(k).startswith("reid_rate@")), None)
            tests = ", ".join(f"{html.escape(str(k))}: {v}" for k, v in (gate.get("identity_tests") or {}).items())
            parts.append(f"<p>Faces: {gate['faces']} in the originals ({tests}); re-identification rate "
                         f"{'n/a' if rate is None else f'{rate:.3f}'} ({gate.get('faces_reidentified', 0)} of "
                         f"{gate.get('faces_measured', 0)} measured faces, criterion {html.escape(str(gate.get('criterion')))})"
                         + ("" if tau_key is None else f"; {html.escape(tau_key)} {gate[tau_key]:.3f}") + ".</p>")
        if gate.get("text_checked"):
            parts.append(f"<p>Text: {gate.get('text_regions', 0)} region(s) in the originals, {gate.get('text_readable', 0)} still "
                         f"readable, {gate.get('text_still_detected', 0)} still detected in the anonymized images.</p>")
        failing = [i for i in gate.get("per_image", []) if i.get("verdict") != "passed"]
        if failing:
            items = "".join(f"<li><span class='badge {html.escape(i['verdict'])}'>{html.escape(i['verdict'])}</span> "
                            f"{html.escape(str(i.get('anonymized') or i.get('original') or i.get('key')))}: "
                            f"{html.escape('; '.join(i.get('problems', [])))}</li>" for i in failing)
            parts.append(f"<h2>Images that fail the release gate</h2><ul>{items}</ul>")
    if include_originals:
        parts.append("<p class='warn'><b>This report contains thumbnails of the original, un-anonymized images.</b> "
                     "Treat it as personal data; make it with --no-originals to share it.</p>")
    s = summary.get("summary", {})
    if s:
        rows = "".join(f"<tr><th class='l'>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in s.items())
        parts.append(f"<h2>Summary</h2><table>{rows}</table>")
    groups = summary.get("groups", {})
    if groups:
        rows = "".join(
            f"<tr><td class='l'>{html.escape(m)}</td><td class='l'>{html.escape(g)}</td><td>{v.get('n', '')}</td>"
            f"<td>{_fmt(v.get('value')) if v.get('value') is not None else html.escape(v.get('error', ''))}</td></tr>"
            for m, gs in groups.items() for g, v in gs.items()
        )
        parts.append(f"<h2>Group metrics</h2><table><tr><th class='l'>metric</th><th class='l'>group</th><th>n</th><th>value</th></tr>{rows}</table>")
    plots = []
    if "identity_distance_at_position" in df.columns:
        tau = s.get("identity_threshold", 0.6)
        plots.append(svg_histogram(pd.to_numeric(df["identity_distance_at_position"], errors="coerce").tolist(),
                                   title=f"identity distance to the original face (re-identified left of {tau:g})", marker=tau))
    if "residual_face_score" in df.columns:
        plots.append(svg_histogram(pd.to_numeric(df["residual_face_score"], errors="coerce").tolist(), title="residual face-detector score"))
    if human and human in df.columns:
        hv = pd.to_numeric(df[human], errors="coerce").tolist()
        for col in metric_cols:
            plots.append(svg_scatter(pd.to_numeric(df[col], errors="coerce").tolist(), hv, title=f"{col} vs {human}", xlabel=col, ylabel=human))
    plots = [p for p in plots if p]
    if plots:
        parts.append("<h2>Plots</h2><div class='plots'>" + "".join(plots) + "</div>")
    parts.extend(sections)
    order = risk_order(df, {k for k, v in per_image.items() if v.get("verdict") != "passed"})[:max_images]
    utility = utility_columns()
    privacy_cols = [c for c in metric_cols if c not in utility]
    show_cols = privacy_cols + [c for c in ("reidentified", human) if c and c in df.columns and c not in metric_cols] \
        + [c for c in metric_cols if c in utility]
    head = "".join(f"<th class='u' title='utility: higher keeps more of the picture'>{html.escape(c)} (utility)</th>" if c in utility
                   else f"<th>{html.escape(c)}</th>" for c in show_cols)
    images_head = (("<th class='l'>original</th>" if include_originals else "") + "<th class='l'>anonymized</th>"
                   + (f"<th class='l'>{html.escape(explain_title)}</th>" if explain else ""))
    parts.append(f"<h2>Images, most at risk first ({len(order)} of {len(df)})</h2><div class='scroll'><table><tr>{images_head}<th class='l'>image</th>{head}</tr>")
    for i in order:
        r = df.iloc[i]
        cells = []
        anon_path = str(r["anonymized"])
        boxes = (regions or {}).get(anon_path, [])
        try:
            orig = r.get("original")
            has_orig = isinstance(orig, str) and bool(orig)
            # each image is decoded once, for its thumbnail and (with explain) the explanation
            orig_rgb = read_image(orig).rgb if has_orig and (include_originals or explain) else None
            anon_rgb = read_image(anon_path).rgb
            if include_originals:
                cells.append(f"<td class='l'><img src='{_thumb(orig_rgb, thumb_size, boxes)}' alt='original'></td>"
                             if has_orig else "<td></td>")
            cells.append(f"<td class='l'><img src='{_thumb(anon_rgb, thumb_size, boxes)}' alt='anonymized'></td>")
            if explain:
                cells.append(f"<td class='l'><img src='{_thumb(explain(anon_rgb, orig_rgb), thumb_size)}' alt='explanation'></td>")
        except AnonlensError as exc:
            cells = [f"<td class='l' colspan='{1 + include_originals + bool(explain)}'>{html.escape(str(exc))}</td>"]
        item = per_image.get(anon_path)
        if item is not None and item.get("faces") and "reidentified" in df.columns:
            # the gate's own reading, so that the table and the badge can never disagree
            r = r.copy()
            r["reidentified"] = any(f.get("reidentified") for f in item["faces"])
        risky = str(r.get("reidentified", "")).lower() == "true" or (item is not None and item.get("verdict") != "passed")
        values = "".join(f"<td>{_cell(r, c)}</td>" for c in show_cols)
        error = f"<br><small>{html.escape(str(r['error']))}</small>" if isinstance(r.get("error"), str) and r.get("error") else ""
        badge = ""
        if item is not None:
            badge = f"<br><span class='badge {html.escape(item['verdict'])}'>{html.escape(item['verdict'])}</span>"
            if item.get("verdict") != "passed" and item.get("problems"):
                badge += f"<br><small>{html.escape('; '.join(item['problems']))}</small>"
        parts.append(f"<tr class='{'risk' if risky else ''}'>{''.join(cells)}<td class='l key'>{html.escape(str(r['key']))}{badge}{error}</td>{values}</tr>")
    parts.append("</table></div><p><small>Made by anonlens. Privacy columns: " + html.escape(
        ", ".join(f"{c}: {directions[c]} is more private" for c in privacy_cols)) + ". Utility columns ("
        + html.escape(", ".join(c for c in metric_cols if c in utility) or "none") + "): higher keeps more of the picture."
        " An empty identity distance means no face was found in the output.</small></p></body></html>")
    output = Path(output)
    with atomic_writer(output) as fh:
        fh.write("\n".join(parts).encode("utf-8"))
    return output
