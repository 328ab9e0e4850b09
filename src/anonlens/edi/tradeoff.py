"""The privacy-utility trade-off of EDI against the uniform operator, on one set of faces.

EDI's curve is its own trajectory: the re-identification rate and the mean SSIM inside the faces
after every round of :func:`~anonlens.edi.loop.edi_set`. The uniform operator's curve is the same
operator over the whole face at increasing strengths. "SSIM at matched risk" compares, for each
risk level reached, the best SSIM each method keeps at or below that risk.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import AnonlensError
from ..io import atomic_writer
from ..operators import create_operator
from ..regions import Region, region_mask, whole_image_region
from .loop import edi_set, region_ssim
from .oracles import IdentityOracle

__all__ = ["STRENGTH_LADDERS", "TradeoffResult", "tradeoff", "matched_risk", "write_tradeoff", "section_html"]

#: uniform strengths per operator, weakest first (the option that is varied and its values)
STRENGTH_LADDERS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "pixelate": ("blocks", (48, 32, 24, 16, 12, 8, 6, 4)),
    "blur": ("strength", (0.01, 0.02, 0.04, 0.06, 0.1, 0.15, 0.2, 0.3)),
    "dp-pix": ("epsilon", (16.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25)),
    "noise": ("sigma", (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)),
    "mask": ("color", ((0, 0, 0),)),
    "inpaint": ("radius", (0.05,)),
}


@dataclass
class TradeoffResult:
    operator: str
    operator_options: dict[str, Any]
    faces: int
    edi: list[dict[str, Any]] = field(default_factory=list)  # per round: rate, ssim (, attribute agreement)
    uniform: list[dict[str, Any]] = field(default_factory=list)  # per strength: option, value, rate, ssim
    matched: list[dict[str, Any]] = field(default_factory=list)
    edi_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("operator", "operator_options", "faces", "edi_options", "edi", "uniform", "matched")}


def matched_risk(edi: Sequence[dict], uniform: Sequence[dict]) -> list[dict[str, Any]]:
    """For every re-identification rate EDI reached: the best SSIM of each method at or below it.

    >>> matched_risk([{"rate": 1.0, "ssim": 1.0}, {"rate": 0.0, "ssim": 0.8}],
    ...              [{"rate": 0.5, "ssim": 0.7}, {"rate": 0.0, "ssim": 0.4}])
    [{'risk': 0.0, 'edi_ssim': 0.8, 'uniform_ssim': 0.4, 'ssim_gap': 0.4}, {'risk': 1.0, 'edi_ssim': 1.0, 'uniform_ssim': 0.7, 'ssim_gap': 0.3}]
    """
    out = []
    for risk in sorted({round(p["rate"], 6) for p in edi}):
        e = [p["ssim"] for p in edi if p["rate"] <= risk + 1e-9]
        u = [p["ssim"] for p in uniform if p["rate"] <= risk + 1e-9]
        if e and u:
            out.append({"risk": risk, "edi_ssim": round(max(e), 6), "uniform_ssim": round(max(u), 6),
                        "ssim_gap": round(max(e) - max(u), 6)})
    return out


def tradeoff(
    images: Sequence[np.ndarray],
    *,
    oracle: IdentityOracle,
    operator: str = "pixelate",
    operator_options: dict[str, Any] | None = None,
    regions: Sequence[Region] | None = None,
    targets: Sequence[Any] | None = None,
    shape: str = "box",
    margin: float = 0.0,
    strengths: Sequence[Any] | None = None,
    q: float = 90.0,
    max_iters: int = 20,
    saliency: str = "auto",
    saliency_options: dict[str, Any] | None = None,
    target_risk: float = 0.0,
    attribute: Callable[[np.ndarray], Any] | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> TradeoffResult:
    """Run EDI and the uniform operator at every strength on ``images`` (one face each: the whole
    image, or ``regions[i]``) and measure both curves with the same oracle. ``targets`` are the
    oracle's identities (default: ``oracle.prepare`` on each original)."""
    if not images:
        raise AnonlensError("no face images given")
    operator_options = dict(operator_options or {})
    op = create_operator(operator, **operator_options)
    regs = list(regions) if regions is not None else [whole_image_region(*im.shape[:2]) for im in images]
    masks = [region_mask(r, im.shape, shape="box" if r.label == "image" else shape, margin=0.0 if r.label == "image" else margin)
             for r, im in zip(regs, images)]
    if targets is None:  # the attacker learns each person from the original
        targets = [oracle.prepare(im, None if r.label == "image" else r) for im, r in zip(images, regs)]
    attrs0 = [attribute(im) for im in images] if attribute else None

    def agreement(outs: Sequence[np.ndarray]) -> float | None:
        if attribute is None:
            return None
        return float(np.mean([attribute(o) == a for o, a in zip(outs, attrs0)]))

    def perturber(operator_obj, i):
        rng = np.random.default_rng([seed, i])
        return lambda img: operator_obj(img, masks[i], regs[i], rng=rng)[0]

    result = TradeoffResult(operator, operator_options, len(images))
    # EDI, recording every round
    res = edi_set(images, oracle=oracle, perturbs=[perturber(op, i) for i in range(len(images))], candidates=masks,
                  targets=targets, target_risk=target_risk, max_iters=max_iters, q=q, saliency=saliency,
                  saliency_options=saliency_options, rng=np.random.default_rng(seed),
                  progress=(lambda k, r: progress(f"EDI round {k}: re-identified {100 * r:.1f} %")) if progress else None)
    for k, (rate, s) in enumerate(zip(res.rates, res.mean_ssim)):
        result.edi.append({"round": k, "rate": round(rate, 6), "ssim": round(s, 6)})
    if attribute is not None:
        result.edi[-1]["attribute_agreement"] = agreement([r.image for r in res.results])
    mean_changed = float(np.mean([r.changed[m].mean() for r, m in zip(res.results, masks)]))
    result.edi_options = {"q": q, "max_iters": max_iters, "saliency": saliency, "target_risk": target_risk,
                          "rounds": res.rounds, "mean_changed_share": round(mean_changed, 4)}
    # uniform, weakest to strongest
    name, ladder = STRENGTH_LADDERS.get(operator, (None, (None,)))
    values = list(strengths) if strengths is not None else list(ladder)
    for v in values:
        opts = dict(operator_options)
        if name is not None and v is not None:
            opts[name] = v
        uop = create_operator(operator, **opts)
        outs = [perturber(uop, i)(im) for i, im in enumerate(images)]
        rate = float(np.mean([m.identified for t, o in zip(targets, outs) for m in oracle.measure(t, [o])]))
        point = {"option": name, "value": v, "rate": round(rate, 6),
                 "ssim": round(float(np.mean([region_ssim(im, o, m) for im, o, m in zip(images, outs, masks)])), 6)}
        if attribute is not None:
            point["attribute_agreement"] = agreement(outs)
        result.uniform.append(point)
        if progress:
            progress(f"uniform {name}={v}: re-identified {100 * rate:.1f} %, SSIM {point['ssim']:.3f}")
    result.matched = matched_risk(result.edi, result.uniform)
    return result


def plot_png(result: TradeoffResult) -> bytes:
    """Re-identification rate against SSIM inside the face, both curves, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ax.plot([p["ssim"] for p in result.edi], [100 * p["rate"] for p in result.edi], "o-", label=f"EDI ({result.operator}, per round)")
    ax.plot([p["ssim"] for p in result.uniform], [100 * p["rate"] for p in result.uniform], "s--", label=f"uniform {result.operator} (per strength)")
    for p in result.uniform:
        ax.annotate(str(p["value"]), (p["ssim"], 100 * p["rate"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("utility: mean SSIM inside the face (higher is better)")
    ax.set_ylabel("re-identification rate, % (lower is better)")
    ax.set_title(f"privacy-utility trade-off, {result.faces} faces")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def section_html(result: dict[str, Any], png: bytes) -> str:
    """The trade-off as an HTML fragment (plot and SSIM-at-matched-risk table), from the JSON
    document :func:`write_tradeoff` writes; used by ``tradeoff.html`` and ``anonlens report --tradeoff``."""
    rows = "".join(f"<tr><td>{100 * m['risk']:.1f} %</td><td>{m['edi_ssim']:.3f}</td><td>{m['uniform_ssim']:.3f}</td><td>{m['ssim_gap']:+.3f}</td></tr>"
                   for m in result["matched"])
    return (f"<h2>Privacy-utility trade-off: EDI vs uniform {html.escape(str(result['operator']))}</h2>"
            f"<p>{result['faces']} faces. EDI options: {html.escape(json.dumps(result['edi_options']))}</p>"
            f"<img alt='trade-off plot' style='max-width:100%' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            "<h3>SSIM inside the face at matched re-identification rate</h3>"
            f"<table><tr><th>rate at most</th><th>EDI SSIM</th><th>uniform SSIM</th><th>gap</th></tr>{rows}</table>")


def _html(result: TradeoffResult, png: bytes) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>anonlens trade-off</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}</style></head><body>"
            + section_html(result.to_dict(), png) + "</body></html>")


def write_tradeoff(result: TradeoffResult, folder: str | os.PathLike) -> dict[str, Path]:
    """Write ``tradeoff.json``, ``tradeoff.csv``, ``tradeoff.png`` and ``tradeoff.html``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_png(result)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "round_or_strength", "rate", "ssim", "attribute_agreement"])
    for p in result.edi:
        w.writerow(["edi", p["round"], p["rate"], p["ssim"], p.get("attribute_agreement", "")])
    for p in result.uniform:
        w.writerow(["uniform", f"{p['option']}={p['value']}", p["rate"], p["ssim"], p.get("attribute_agreement", "")])
    files = {
        "json": (folder / "tradeoff.json", json.dumps(result.to_dict(), indent=2, default=str).encode()),
        "csv": (folder / "tradeoff.csv", buf.getvalue().encode()),
        "png": (folder / "tradeoff.png", png),
        "html": (folder / "tradeoff.html", _html(result, png).encode()),
    }
    for path, data in files.values():
        with atomic_writer(path) as fh:
            fh.write(data)
    return {k: v[0] for k, v in files.items()}
