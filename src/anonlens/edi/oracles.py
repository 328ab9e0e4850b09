"""Identity oracles: the attacker EDI-Anon anonymizes against.

An oracle is prepared once per face (``prepare``: what identifies this person) and then
``measure``-s candidate images. Its ``evidence`` is positive while the person is still identified
and its size says by how much, so that saliency methods can ask "which pixels lower it most":

- ``dlib`` (black-box, default): the 128-d dlib face descriptor used by the assessment. Identified
  while the distance to the original's descriptor is below ``threshold`` (0.6), measured at the
  original's landmarks (the strongest attacker: it knows where the face was). With a ``gallery``
  of other people's descriptors, identified while the original is still the nearest identity
  (rank-1). Evidence = ``threshold - distance`` (gallery: nearest other - own distance).
  On the torch engine (anonlens' PyTorch build of dlib's network, the default where torch is
  installed) the same oracle is also **white-box**: :meth:`DlibOracle.input_gradient` gives the
  gradient of the identity distance with respect to the image's elements, through the alignment's
  affine warp (:mod:`anonlens.facenet.align`); the gradient saliency ranks elements by that
  gradient times the change the operator would make there (the first-order gain in distance).
  Distances are always measured on dlib's own chip.
- ``classifier`` (white-box): a torch identity classifier trained by ``anonlens train-identity``.
  Identified while it predicts the true identity (the reference's attacker accuracy). Evidence =
  true logit - best other logit. Gives input gradients and Grad-CAM for the saliency step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import cv2
import numpy as np

from ..checks import as_rgb_uint8
from ..errors import AnonlensError
from ..identity import DlibFaceEmbedder
from ..registry import Registry
from ..regions import Region

__all__ = ["IdentityOracle", "Measure", "DlibOracle", "ClassifierOracle", "ORACLES", "create_oracle"]


@dataclass(frozen=True)
class Measure:
    """One check of one image: ``evidence > 0`` means still identified."""

    evidence: float
    distance: float | None = None  # dlib: descriptor distance to the original
    probability: float | None = None  # classifier: probability of the true identity

    @property
    def identified(self) -> bool:
        return self.evidence > 0

    def to_dict(self) -> dict[str, Any]:
        d = {"evidence": round(float(self.evidence), 6), "identified": self.identified}
        if self.distance is not None:
            d["identity_distance"] = round(float(self.distance), 6)
        if self.probability is not None:
            d["true_identity_probability"] = round(float(self.probability), 6)
        return d


class IdentityOracle(ABC):
    """Base class of identity oracles (see the module docstring)."""

    name: ClassVar[str] = ""
    #: True when the oracle is a differentiable torch model (input gradients, Grad-CAM)
    white_box: ClassVar[bool] = False

    @abstractmethod
    def prepare(self, original: np.ndarray, region: Region | None = None, *, label: Any = None) -> Any:
        """What identifies the person in ``region`` of ``original`` (None: the whole image)."""

    @abstractmethod
    def measure(self, target: Any, images: Sequence[np.ndarray]) -> list[Measure]:
        """Check each image (same size as the original) against ``target``."""

    def evidence(self, target: Any, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([m.evidence for m in self.measure(target, images)], dtype=np.float64)

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


ORACLES: Registry[IdentityOracle] = Registry("identity oracle")


@ORACLES.register("dlib", summary="dlib 128-d face descriptor (black-box); identified while distance < threshold.")
class DlibOracle(IdentityOracle):
    name = "dlib"

    def __init__(self, *, threshold: float = 0.6, gallery: Sequence[Sequence[float]] | None = None, embedder=None,
                 engine: str = "auto", device: str = "cpu"):
        if not 0 < float(threshold) < 2:
            raise AnonlensError(f"threshold must be between 0 and 2 (dlib distances), got {threshold}")
        self.threshold = float(threshold)
        self._gallery = None if gallery is None else np.asarray(gallery, dtype=np.float64).reshape(-1, 128)
        self.gallery_size = 0 if self._gallery is None else int(len(self._gallery))
        self._embedder = embedder or DlibFaceEmbedder(engine=engine, device=device)
        self.engine = getattr(self._embedder, "engine", "dlib")
        #: white-box (input gradients) on the torch engine
        self.white_box = self.engine == "torch" and getattr(self._embedder, "_torch_net", None) is not None
        #: the gradient saliency ranks elements by gradient x (operator's value - current value)
        self.gradient_times_delta = True
        #: occlusion by default even when white-box: the gradient finds scattered elements that fool
        #: the network while a person still recognises the face (seen on a portrait); occlusion
        #: perturbs whole windows of what reveals the identity
        self.preferred_saliency = "occlusion"

    def prepare(self, original, region=None, *, label=None):
        original = as_rgb_uint8(original)
        if region is None:
            face = self._embedder.embed(original)
            if face is None:  # an aligned face crop too tight for the HOG detector: the whole image
                face = self._embedder.embed_at(original, (0, 0, original.shape[1], original.shape[0]))
            return face
        return self._embedder.embed_at(original, region.box)

    def measure(self, target, images):
        return self.measure_many([target] * len(images), images)

    def _measure(self, target, vec: np.ndarray) -> Measure:
        d = float(np.linalg.norm(vec - target.vector))
        if self._gallery is None:
            return Measure(self.threshold - d, distance=d)
        nearest_other = float(np.min(np.linalg.norm(self._gallery - vec, axis=1)))
        return Measure(nearest_other - d, distance=d)

    def input_gradient(self, target, image: np.ndarray) -> tuple[np.ndarray, Measure]:
        """White-box (torch engine): the gradient of the identity distance with respect to each
        element, ``(H, W, 3)``, and the image's measure (on dlib's own chip). The gradient saliency
        multiplies it by the change the operator would make (see ``gradient_times_delta``)."""
        grads, measures = self.input_gradients([target], [image])
        return grads[0], measures[0]

    def input_gradients(self, targets: Sequence[Any], images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[Measure]]:
        """:meth:`input_gradient` for many faces: the distance's gradient through the alignment's
        affine warp (bilinear) of each image, descriptors of the exact chips in one batch."""
        import torch

        from ..facenet.align import chip_to_image_affine, warp_chips

        if not self.white_box:
            raise AnonlensError("input gradients need the torch identity engine (pip install 'anonlens[learn]')")
        net = self._embedder._torch_net
        measures = self.measure_many(targets, images)
        grads = []
        for target, image in zip(targets, images):
            img = torch.from_numpy(as_rgb_uint8(image)).to(self._embedder.device).permute(2, 0, 1).float().requires_grad_(True)
            chip = warp_chips(img, chip_to_image_affine(target.shape, padding=self._embedder.padding)[None])
            ref = torch.as_tensor(target.vector, dtype=torch.float32, device=img.device)
            dist = (net(chip)[0] - ref).norm()
            (g,) = torch.autograd.grad(dist, img)
            grads.append(g.permute(1, 2, 0).cpu().numpy())
        return grads, measures

    def measure_many(self, targets: Sequence[Any], images: Sequence[np.ndarray]) -> list[Measure]:
        """Each image measured against its own target, the descriptors in one batch."""
        vectors = self._embedder.describe_many([(as_rgb_uint8(image), t.shape) for t, image in zip(targets, images)])
        return [self._measure(t, v) for t, v in zip(targets, vectors)]


@ORACLES.register("classifier", summary="torch identity classifier from `anonlens train-identity` (white-box).", extra="learn")
class ClassifierOracle(IdentityOracle):
    """A trained identity classifier; ``model`` is a checkpoint path or a loaded
    :class:`~anonlens.edi.classifier.IdentityClassifier`.

    The image is resized to the model's input size (no resizing when it already has that size,
    which is the reference's setting). ``gradient_space``: ``input`` (default) takes gradients with
    respect to the ``[0, 1]`` image, the reference's input space (it feeds unnormalised images);
    ``normalized`` with respect to the mean/std-normalised tensor the network sees (per channel
    1/std times the former, which changes about 2 % of the elements selected at q = 90).
    Gradients are resized back to the image when the sizes differ.
    """

    name = "classifier"
    white_box = True

    def __init__(self, *, model: Any = None, device: str = "cpu", gradient_space: str = "input"):
        from .classifier import IdentityClassifier, load_identity_classifier

        if gradient_space not in ("input", "normalized"):
            raise AnonlensError(f"gradient_space must be 'input' (the reference's [0, 1] images) or 'normalized'; got {gradient_space!r}")
        self.gradient_space = gradient_space
        if model is None:
            raise AnonlensError("the classifier oracle needs a model: a checkpoint from `anonlens train-identity`")
        self.model_path = None if isinstance(model, IdentityClassifier) else str(model)
        self._model = model if isinstance(model, IdentityClassifier) else load_identity_classifier(model)
        self._model = self._model.to(device).eval()
        self.device = device

    @property
    def model(self):
        return self._model

    def prepare(self, original, region=None, *, label=None):
        """The true identity: ``label`` (a class name or index), else the class the model predicts
        for the original (the person the attacker recognises)."""
        classes = self._model.classes
        if label is not None:
            if isinstance(label, str):
                if label not in classes:
                    raise AnonlensError(f"identity '{label}' is not one of the classifier's {len(classes)} classes")
                return classes.index(label)
            return int(label)
        return int(self.logits([original]).argmax(1)[0])

    def tensor(self, images: Sequence[np.ndarray]):
        return self._model.preprocess(images).to(self.device)

    def logits(self, images: Sequence[np.ndarray]):
        import torch

        with torch.no_grad():
            return self._model(self.tensor(images)).float().cpu()

    @staticmethod
    def _measures(logits, target: int) -> list[Measure]:
        import torch

        probs = torch.softmax(logits, dim=1)
        others = logits.clone()
        others[:, target] = -float("inf")
        ev = logits[:, target] - others.max(dim=1).values
        return [Measure(float(e), probability=float(p)) for e, p in zip(ev, probs[:, target])]

    def measure(self, target, images):
        return self._measures(self.logits(images), int(target))

    def input_gradient(self, target: int, image: np.ndarray) -> tuple[np.ndarray, Measure]:
        """The reference's saliency: gradient of the cross-entropy toward the runner-up class
        with respect to the input (in :attr:`gradient_space`), as an ``(H, W, 3)`` array; and the
        image's measure (the forward pass is shared)."""
        grads, measures = self.input_gradients([target], [image])
        return grads[0], measures[0]

    def input_gradients(self, targets: Sequence[int], images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[Measure]]:
        """:meth:`input_gradient` for many images in one batch. The model is in eval mode and the
        per-image losses are summed, so each image's gradient equals its own batch-of-one gradient
        (the reference's setting)."""
        import torch
        import torch.nn.functional as Fn

        if self.gradient_space == "input":
            x = self._model.to_unit(images).to(self.device).requires_grad_(True)
            logits = self._model(self._model.normalize(x))
        else:
            x = self.tensor(images).requires_grad_(True)
            logits = self._model(x)
        det = logits.detach()
        tg = torch.as_tensor([int(t) for t in targets], device=det.device)
        ranked = det.argsort(dim=1, descending=True)
        runner_up = torch.where(ranked[:, 0] == tg, ranked[:, 1], ranked[:, 0])
        loss = Fn.cross_entropy(logits, runner_up, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        grads = []
        for g, image in zip(grad.permute(0, 2, 3, 1).float().cpu().numpy(), images):
            if g.shape[:2] != image.shape[:2]:
                g = cv2.resize(g, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            grads.append(g)
        det = det.float().cpu()
        measures = [self._measures(det[i : i + 1], int(t))[0] for i, t in enumerate(targets)]
        return grads, measures

    def gradcam(self, target: int, image: np.ndarray) -> np.ndarray:
        """Grad-CAM (captum) of the true identity's logit, ``(H, W)`` at the image's size."""
        from captum.attr import LayerAttribution, LayerGradCam

        x = self.tensor([image]).requires_grad_(True)
        cam = LayerGradCam(self._model, self._model.cam_layer())
        attr = cam.attribute(x, target=int(target), relu_attributions=True)
        attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        heat = attr[0, 0].detach().float().cpu().numpy()
        return cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


def create_oracle(name: str = "dlib", **options: Any) -> IdentityOracle:
    """Create the identity oracle registered as ``name`` (``dlib`` or ``classifier``)."""
    return ORACLES.create(name, **options)
