"""The EDI-Anon loop: perturb only the most identity-revealing pixels, re-check, repeat.

Per image, each iteration: compute the operator's output for the whole candidate region of the
current image, ask the saliency method which elements reveal the identity, swap in the operator's
output at the elements at or above the ``q``-th percentile of the saliency (the top ``100 - q`` %),
and re-check the oracle. Stop when the oracle no longer identifies the person or after
``max_iters``. Everything stays in memory as uint8 arrays: no re-encoding, no contrast stretching,
no copy of the data set per iteration (the reference's quirks).

Over a set, :func:`edi_set` advances every still-identified image one iteration per round and
stops when the re-identification rate is at or below ``target_risk``, as the reference's
dataset-level loop does; it records the rate (and mean SSIM) after every round.

``refresh=N`` (an option, not the reference) recomputes the saliency only every N iterations and
in between perturbs the next most revealing elements of the last map: N times fewer saliency
passes, which is what costs with a black-box oracle (occlusion: ``windows**2`` oracle calls each).

``select="fresh"`` (an option, not the reference) lets only the elements the operator would still
change compete for the top ``100 - q`` %: the reference keeps re-selecting elements it already
perturbed, which can stall progress for a long tail of images.

One deliberate difference: when the reference's selection would change nothing (every selected
element already equals the operator's output, e.g. masking the same dots again), the reference
loops without progress; anonlens then selects among the elements the operator still changes, and
marks the image ``stalled`` if there are none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from ..errors import AnonlensError
from ..metrics.functional import psnr, ssim, ssim_map
from .oracles import IdentityOracle, Measure, create_oracle
from .saliency import check_saliency, default_saliency, gradient_times_delta, saliency_map

__all__ = ["EDIConfig", "EDIProcess", "EDIResult", "EDISetResult", "select_elements", "edi_anonymize", "edi_set", "utility_record", "region_ssim", "reid_curve"]


@dataclass(frozen=True)
class EDIConfig:
    """Options of the EDI method (the reference's defaults: q = 90; use 99 for masking)."""

    oracle: str = "dlib"
    threshold: float = 0.6  # dlib oracle: "same person" below this distance
    #: dlib oracle: EDI stops only at a distance of threshold + margin (a face that stops just past
    #: the threshold is still recognisable to people; 0 reproduces the reference)
    margin: float = 0.1
    #: classifier oracle: gradients w.r.t. the [0, 1] image (input, the reference) or the normalised tensor
    gradient_space: Literal["input", "normalized"] = "input"
    model: str | None = None  # classifier oracle: checkpoint from `anonlens train-identity`
    device: str = "cpu"
    saliency: str = "auto"  # gradient (white-box oracles), occlusion (black-box)
    windows: int = 4  # occlusion: windows across the region (windows**2 oracle calls per iteration)
    masks: int = 32  # rise: random masks per iteration
    q: float = 90.0
    select: Literal["reference", "fresh"] = "reference"  # fresh: only elements the operator still changes compete
    refresh: int = 1  # recompute the saliency every N iterations (1: every iteration, the reference)
    max_iters: int = 20
    on_fail: Literal["uniform", "keep"] = "uniform"
    target_risk: float = 0.01
    attribute_model: str | None = None  # a train-identity classifier of an attribute (age, gender...): is it kept?

    def __post_init__(self) -> None:
        if not 0 <= float(self.q) < 100:
            raise AnonlensError(f"q must be in [0, 100), got {self.q}")
        if int(self.max_iters) < 1:
            raise AnonlensError(f"max_iters must be at least 1, got {self.max_iters}")
        if self.on_fail not in ("uniform", "keep"):
            raise AnonlensError(f"on_fail must be 'uniform' (fail closed: perturb the whole region) or 'keep'; got {self.on_fail!r}")
        if not 0 <= float(self.target_risk) <= 1:
            raise AnonlensError(f"target_risk must be a rate in [0, 1], got {self.target_risk}")
        if not 0 <= float(self.margin) < 1:
            raise AnonlensError(f"margin must be in [0, 1) (a dlib distance added to the threshold), got {self.margin}")
        if self.oracle == "classifier" and not self.model:
            raise AnonlensError("the classifier oracle needs --oracle-model (a checkpoint from `anonlens train-identity`)")

    def create_oracle(self) -> IdentityOracle:
        if self.oracle == "dlib":  # stop only at threshold + margin
            return create_oracle("dlib", threshold=float(self.threshold) + float(self.margin))
        if self.oracle == "classifier":
            return create_oracle("classifier", model=self.model, device=self.device, gradient_space=self.gradient_space)
        return create_oracle(self.oracle)

    def saliency_for(self, oracle: IdentityOracle) -> tuple[str, dict[str, Any]]:
        method = default_saliency(oracle) if self.saliency == "auto" else self.saliency
        opts = {"occlusion": {"windows": int(self.windows)}, "rise": {"masks": int(self.masks)}}.get(method, {})
        check_saliency(method, opts, oracle)
        return method, opts


def select_elements(saliency: np.ndarray, candidates: np.ndarray, q: float) -> np.ndarray:
    """Candidate elements whose saliency is at or above the ``q``-th percentile (numpy's linear
    interpolation) of the candidates' saliency: the reference's rule.

    ``saliency`` is ``(H, W)`` (pixels) or ``(H, W, 3)`` (elements, as the reference's gradient);
    the result has the same shape.

    >>> s = np.arange(10.0).reshape(2, 5)
    >>> select_elements(s, np.ones((2, 5), bool), 80).astype(int).tolist()
    [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    """
    cand = candidates if saliency.ndim == 2 else np.broadcast_to(candidates[..., None], saliency.shape)
    return _select_within(saliency, cand, q)


def _select_within(saliency: np.ndarray, allowed: np.ndarray, q: float) -> np.ndarray:
    """Like :func:`select_elements`, with ``allowed`` already of the saliency's shape."""
    values = saliency[allowed]
    if values.size == 0:
        return np.zeros(saliency.shape, bool)
    return (saliency >= np.percentile(values, q)) & allowed


@dataclass
class EDIResult:
    """One image after EDI: the image, whether it is still identified, and the path taken."""

    image: np.ndarray
    identified: bool
    iterations: int
    changed: np.ndarray  # (H, W) pixels that differ from the original
    history: list[Measure] = field(default_factory=list)  # before iteration 1, then after each
    stalled: bool = False
    fallback: bool = False  # the uniform operator was applied because EDI did not get there
    after_fallback: Measure | None = None  # the oracle's check of the fallback image

    @property
    def final(self) -> Measure:
        return self.after_fallback if self.after_fallback is not None else self.history[-1]

    def to_dict(self, candidates: np.ndarray | None = None) -> dict[str, Any]:
        region = int(candidates.sum()) if candidates is not None else self.changed.size
        last = self.final
        d: dict[str, Any] = {
            "iterations": self.iterations,
            "identified": self.identified,
            "stalled": self.stalled,
            "fallback": self.fallback,
            "changed_pixels": int(self.changed.sum()),
            "changed_share_region": round(float(self.changed[candidates].sum() / max(1, region)) if candidates is not None else float(self.changed.mean()), 6),
            "changed_share_image": round(float(self.changed.mean()), 6),
            "evidence_history": [round(float(m.evidence), 5) for m in self.history],
            **{k: v for k, v in last.to_dict().items() if k != "identified"},
        }
        return d


class EDIProcess:
    """The state of EDI on one image; :meth:`step` runs one iteration."""

    def __init__(
        self,
        image: np.ndarray,
        candidates: np.ndarray,
        *,
        oracle: IdentityOracle,
        target: Any,
        perturb: Callable[[np.ndarray], np.ndarray],
        saliency: str = "auto",
        saliency_options: dict[str, Any] | None = None,
        q: float = 90.0,
        rng: np.random.Generator | None = None,
        initial: tuple[Measure, np.ndarray | None] | None = None,
        select: Literal["reference", "fresh"] = "reference",
        refresh: int = 1,
    ):
        if select not in ("reference", "fresh"):
            raise AnonlensError(f"select must be 'reference' or 'fresh', got {select!r}")
        if int(refresh) < 1:
            raise AnonlensError(f"refresh must be at least 1 (recompute the saliency every N iterations), got {refresh}")
        self.select = select
        self.refresh = int(refresh)
        self._kept: np.ndarray | None = None  # saliency reused between refreshes (selected elements at -inf)
        self.original = image
        self.current = image.copy()
        self.candidates = np.asarray(candidates, bool)
        if self.candidates.shape != image.shape[:2]:
            raise AnonlensError(f"candidate mask {self.candidates.shape} does not match the image {image.shape[:2]}")
        self.oracle, self.target, self.perturb, self.q = oracle, target, perturb, float(q)
        self.method = default_saliency(oracle) if saliency == "auto" else saliency
        self.saliency_options = dict(saliency_options or {})
        check_saliency(self.method, self.saliency_options, oracle)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.iterations = 0
        self.stalled = False
        self.changed = np.zeros(image.shape[:2], bool)
        self._pending: np.ndarray | None = None  # the gradient of the current image, when already known
        if initial is not None:
            first, self._pending = initial
        elif self.method == "gradient":
            self._pending, first = oracle.input_gradient(target, self.current)
        else:
            first = oracle.measure(target, [self.current])[0]
        self.history: list[Measure] = [first]

    @property
    def measure(self) -> Measure:
        return self.history[-1]

    @property
    def identified(self) -> bool:
        return self.measure.identified

    @property
    def active(self) -> bool:
        return self.identified and not self.stalled

    def step(self) -> Measure:
        """One iteration: select, swap in, re-check."""
        if not self.advance():
            return self.measure
        if self.method == "gradient":
            grad, m = self.oracle.input_gradient(self.target, self.current)
            return self.checked(m, grad)
        return self.checked(self.oracle.measure(self.target, [self.current])[0])

    def advance(self) -> bool:
        """Select the elements and swap in the operator's output (no re-check yet); False when
        nothing can change any more (``stalled``)."""
        perturbed = self.perturb(self.current)
        if self._kept is not None and self.iterations % self.refresh:
            sal = self._kept  # between refreshes: the next most revealing elements of the last map
            self._pending = None
        elif self._pending is not None:
            sal, self._pending = self._pending, None
            if getattr(self.oracle, "gradient_times_delta", False):
                sal = gradient_times_delta(sal, self.current, perturbed)
        else:
            sal = saliency_map(self.method, self.oracle, self.target, self.current, perturbed, self.candidates,
                               rng=self.rng, **self.saliency_options)
        diff = perturbed != self.current
        cand = self.candidates if sal.ndim == 2 else np.broadcast_to(self.candidates[..., None], sal.shape)
        if self.select == "fresh":  # only elements the operator still changes compete
            cand = cand & (diff if sal.ndim == 3 else diff.any(axis=2))
        if sal is self._kept:  # elements already taken since the last refresh are out
            cand = cand & np.isfinite(sal)
        sel = _select_within(sal, cand, self.q)
        sel3 = sel if sel.ndim == 3 else np.broadcast_to(sel[..., None], diff.shape)
        if not (sel3 & diff).any():
            # the reference would loop here without progress; choose among elements that still change
            movable = diff & np.broadcast_to(self.candidates[..., None], diff.shape)
            if not movable.any():
                self.stalled = True
                return False
            sel3 = _select_within(sal if sal.ndim == 3 else np.broadcast_to(sal[..., None], diff.shape), movable, self.q)
        np.copyto(self.current, perturbed, where=sel3)
        if self.refresh > 1:
            kept = np.array(sal, dtype=np.float64)
            kept[sel3 if kept.ndim == 3 else sel3.any(axis=2)] = -np.inf
            self._kept = kept
        self.changed |= (self.current != self.original).any(axis=2)
        self.iterations += 1
        return True

    def checked(self, measure: Measure, gradient: np.ndarray | None = None) -> Measure:
        """Record the oracle's check of the current image (and its gradient, for the next step)."""
        self._pending = gradient
        self.history.append(measure)
        return measure

    def result(self) -> EDIResult:
        return EDIResult(self.current, self.identified, self.iterations, self.changed, list(self.history), self.stalled)


def edi_anonymize(
    image: np.ndarray,
    candidates: np.ndarray | None = None,
    *,
    oracle: IdentityOracle,
    perturb: Callable[[np.ndarray], np.ndarray],
    target: Any = None,
    max_iters: int = 20,
    on_fail: Literal["uniform", "keep"] = "uniform",
    **process_options: Any,
) -> EDIResult:
    """Run EDI on one image until the oracle no longer identifies the person or ``max_iters``.

    ``candidates`` (default: the whole image) is where pixels may change; ``perturb`` maps an image
    to the operator's output over the candidates; ``target`` comes from ``oracle.prepare`` (default:
    prepared from ``image`` itself). With ``on_fail="uniform"`` (fail closed) an image still
    identified at the end gets ``perturb`` over the whole region, and ``fallback`` is set.
    """
    if candidates is None:
        candidates = np.ones(image.shape[:2], bool)
    if target is None:
        target = oracle.prepare(image)
    proc = EDIProcess(image, candidates, oracle=oracle, target=target, perturb=perturb, **process_options)
    while proc.active and proc.iterations < max_iters:
        proc.step()
    res = proc.result()
    if res.identified and on_fail == "uniform":
        full = perturb(res.image)
        m = oracle.measure(target, [full])[0]
        res = EDIResult(full, m.identified, res.iterations, (full != image).any(axis=2), res.history, res.stalled,
                        fallback=True, after_fallback=m)
    return res


def region_ssim(original: np.ndarray, anonymized: np.ndarray, region: np.ndarray) -> float:
    """Mean of the SSIM map inside ``region`` (the standard Gaussian SSIM, data range 1)."""
    if not (original != anonymized).any():
        return 1.0
    m = ssim_map(original.astype(np.float32) / 255, anonymized.astype(np.float32) / 255)
    return float(m[region].mean())


def utility_record(original: np.ndarray, anonymized: np.ndarray, region: np.ndarray | None = None) -> dict[str, float]:
    """SSIM and PSNR against the original: overall and (with ``region``) inside the region."""
    out = {"ssim": round(ssim(original, anonymized), 6), "psnr": round(min(psnr(original, anonymized), 999.0), 4)}
    if region is not None and region.any():
        out["ssim_region"] = round(region_ssim(original, anonymized, region), 6)
        d = original[region].astype(np.float64) - anonymized[region]
        mse = float(np.mean(d * d)) / 255.0**2
        out["psnr_region"] = round(999.0 if mse == 0 else float(10 * np.log10(1 / mse)), 4)
    return out


@dataclass
class EDISetResult:
    results: list[EDIResult]
    rates: list[float]  # re-identification rate before round 1, then after each round
    mean_ssim: list[float]  # mean SSIM inside the candidate regions at the same points
    rounds: int
    reached_target: bool


def edi_set(
    images: Sequence[np.ndarray],
    *,
    oracle: IdentityOracle,
    perturbs: Sequence[Callable[[np.ndarray], np.ndarray]],
    candidates: Sequence[np.ndarray] | None = None,
    targets: Sequence[Any] | None = None,
    target_risk: float = 0.01,
    max_iters: int = 20,
    progress: Callable[[int, float], None] | None = None,
    batch_size: int = 64,
    **process_options: Any,
) -> EDISetResult:
    """The reference's dataset-level loop, in memory: one iteration per still-identified image per
    round until the re-identification rate is at or below ``target_risk`` (or ``max_iters``).

    With a white-box oracle and gradient saliency, the images of a round are checked in batches of
    ``batch_size`` (each image's gradient is the same as alone: eval mode, summed losses)."""
    n = len(images)
    if n == 0:
        raise AnonlensError("no images to anonymize")
    cands = candidates or [np.ones(im.shape[:2], bool) for im in images]
    tgts = targets if targets is not None else [oracle.prepare(im) for im in images]
    saliency = process_options.get("saliency", "auto")
    batched = oracle.white_box and (saliency == "gradient" or (saliency == "auto" and default_saliency(oracle) == "gradient"))
    initial: list = [None] * n
    if batched:  # white-box gradients of many images in one pass (same result as one by one)
        for s, (grads, ms) in _gradient_batches(oracle, tgts, images, batch_size):
            for j, (g, m) in enumerate(zip(grads, ms)):
                initial[s + j] = (m, g)
    procs = [EDIProcess(im, c, oracle=oracle, target=t, perturb=p, initial=init, **process_options)
             for im, c, t, p, init in zip(images, cands, tgts, perturbs, initial)]

    def rate() -> float:
        return sum(p.identified for p in procs) / n

    rates = [rate()]
    cache = [1.0] * n  # SSIM of each image; recomputed only for images that changed in a round
    ssims = [1.0]
    rounds = 0
    last = [p.history[-1] for p in procs]
    while rates[-1] > target_risk and rounds < max_iters and any(p.active for p in procs):
        if batched:
            moved = [p for p in procs if p.active and p.advance()]
            for s, (grads, ms) in _gradient_batches(oracle, [p.target for p in moved], [p.current for p in moved], batch_size):
                for p, g, m in zip(moved[s:], grads, ms):
                    p.checked(m, g)
        else:
            for p in procs:
                if p.active:
                    p.step()
        rounds += 1
        rates.append(rate())
        for i, p in enumerate(procs):
            if p.iterations and p.history[-1] is not last[i]:
                cache[i] = region_ssim(p.original, p.current, p.candidates)
        last = [p.history[-1] for p in procs]
        ssims.append(float(np.mean(cache)))
        if progress:
            progress(rounds, rates[-1])
    return EDISetResult([p.result() for p in procs], rates, ssims, rounds, rates[-1] <= target_risk)


def _gradient_batches(oracle, targets, images, batch_size):
    for s in range(0, len(images), batch_size):
        yield s, oracle.input_gradients(targets[s : s + batch_size], images[s : s + batch_size])


def reid_curve(histories: Sequence[Sequence[float]]) -> list[float]:
    """Re-identification rate after each iteration from per-face evidence histories (an image
    that stopped keeps its last state).

    >>> reid_curve([[1.0, -0.5], [2.0, 1.0, 0.5, -1.0]])
    [1.0, 0.5, 0.5, 0.0]
    """
    if not histories:
        return []
    k = max(len(h) for h in histories)
    return [sum(h[min(i, len(h) - 1)] > 0 for h in histories) / len(histories) for i in range(k)]
