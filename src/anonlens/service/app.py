"""The web service: a FastAPI app made by :func:`create_app`, a thin shell over the library.

``POST /anonymize`` runs :func:`anonlens.pipeline.anonymize_encoded` (the batch runner's per-image
core: decode with validation, detect, perturb, verify, encode without metadata) and then the
release gate's check (:func:`anonlens.assess.gate.check_images`) on the pair; ``POST /check``
runs that check on a pair the client sends. Nothing is stored: uploads are read into memory
(multipart parts are never spooled to disk: the spool size is raised above the body limit), never
logged, and responses say ``Cache-Control: no-store``. Fail closed: an image that cannot be
anonymized, or whose anonymized version the check finds still identifiable, is not returned.
"""



import asyncio
import base64
import concurrent.futures
import logging
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, replace
from importlib import resources
from typing import Any, List, Literal, Optional

from .._version import __version__
from ..assess.gate import check_images
from ..detectors import DETECTORS
from ..errors import AnonlensError, ImageReadError, ImageTooLargeError, OptionError, UnknownNameError
from ..extras import has_extra
from ..io import decode_image, sniff_format
from ..io.images import GIF_REFUSED
from ..operators import OPERATORS
from ..options import parse_options
from ..pipeline import MAX_MARGIN, SCOPES, AnonymizeConfig, anonymize_encoded, cached_anonymizer
from ..verify import pair_checker
from .limits import DEFAULT_ALLOWED_HOSTS, AllowedHosts, Admission, BodyLimit, Busy, allowed_host

__all__ = ["ServiceSettings", "create_app", "SUPPORTED_FORMATS"]

log = logging.getLogger("anonlens.service")

#: what the service accepts and returns (the input's format is kept)
SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
                     "TIFF": "image/tiff", "HEIF": "image/heic", "AVIF": "image/avif"}
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "HEIF": "heic", "AVIF": "avif"}
#: verdicts for which the anonymized image is not returned
_REFUSED = ("re-identified", "text-readable", "residual-face", "residual-text")

_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                                       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"}


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and start-up of the service (``anonlens serve`` options)."""

    max_upload_bytes: int = 25 << 20  #: per image
    max_pixels: int = 40_000_000  #: per image (decompression-bomb guard)
    max_concurrent: int = 4  #: requests worked on at once; one more gets 503
    jpeg_quality: int = 95
    preload: bool = True  #: load the default models at start-up
    #: the names a request's Host header may say (any port); others get 400 (a DNS-rebinding guard).
    #: ``anonlens serve`` adds the address it listens on and each ``--allowed-host``; "*": any
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS

    def __post_init__(self) -> None:
        for name in self.allowed_hosts:
            try:
                allowed_host(name)
            except ValueError as exc:
                raise OptionError(f"allowed host {exc}") from None

    @property
    def max_request_bytes(self) -> int:  # two images (POST /check) and the form fields
        return 2 * self.max_upload_bytes + (256 << 10)


class ServiceError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        self.status, self.message, self.extra = status, message, extra
        super().__init__(message)


def _raise_spool_limit(limit: int) -> None:
    """Starlette spools a multipart file part to a temporary file past ``spool_max_size`` (1 MB):
    keep every part of an admitted request in memory instead (the body limit bounds it)."""
    from starlette.formparsers import MultiPartParser

    if MultiPartParser.spool_max_size <= limit:
        MultiPartParser.spool_max_size = limit + 1


def _config(detector_option: list[str] | None, operator_option: list[str] | None, *, threshold: float | None,
            seed: int | None, **fields: Any) -> AnonymizeConfig:
    """The request's :class:`~anonlens.pipeline.AnonymizeConfig` (``fields``: scope, detector,
    operator, ...). The ``key=value`` options are read by :func:`anonlens.options.parse_options`
    (the CLI's grammar), typed by the detector's and the operator's registry entries; the form's
    own ``threshold`` and ``seed`` go over them."""
    base = AnonymizeConfig(**fields)
    detector = DETECTORS.get(base.detector_name) if base.detector_name else None
    det_opts = parse_options(detector_option, "detector", target=detector)
    op_opts = parse_options(operator_option, "operator", target=OPERATORS.get(base.operator))
    if threshold is not None:
        det_opts["threshold"] = threshold
    if seed is not None:
        op_opts["seed"] = seed
    return replace(base, detector_options=det_opts, operator_options=op_opts)


async def _read_upload(upload, field: str, settings: ServiceSettings) -> bytes:
    """The whole upload, in memory; 413 over the limit, 415 for a type the service does not take."""
    if upload is None or not hasattr(upload, "read"):
        raise ServiceError(422, f"'{field}' must be an image file (multipart/form-data)")
    data = await upload.read(settings.max_upload_bytes + 1)
    await upload.close()
    if len(data) > settings.max_upload_bytes:
        raise ServiceError(413, f"'{field}' is over the limit of {settings.max_upload_bytes:,} bytes")
    if not data:
        raise ServiceError(422, f"'{field}' is empty (0 bytes)")
    fmt = sniff_format(data[:32])
    if fmt == "GIF":
        raise ServiceError(415, f"'{field}': {GIF_REFUSED}")
    if fmt is None or fmt not in SUPPORTED_FORMATS:
        what = f"{fmt} images are" if fmt else "this file type is"
        raise ServiceError(415, f"'{field}': {what} not supported; send JPEG, PNG, WebP, BMP, TIFF, HEIC or AVIF")
    return data


@contextmanager
def _image_errors(field: str):
    """An image that cannot be read becomes 413 (too many pixels) or 422 (anything else), naming the field."""
    try:
        yield
    except ImageTooLargeError as exc:
        raise ServiceError(413, f"'{field}': {exc.problem}") from None
    except ImageReadError as exc:
        raise ServiceError(422, f"'{field}': {exc.problem}") from None


def _decode(data: bytes, field: str, settings: ServiceSettings):
    """The decoded image (colour and alpha: the check measures both)."""
    with _image_errors(field):
        return decode_image(data, name=field, max_pixels=settings.max_pixels)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, AnonlensError) else f"bad option: {text}"


def _validation_line(detail: list[dict[str, Any]]) -> str:
    """FastAPI's validation errors in one line: ``'seed': Input should be a valid integer, ...``."""
    parts = []
    for e in detail:
        loc = [str(x) for x in e["loc"] if x not in ("body", "query", "header", "path", "cookie")]
        msg = " ".join(e["msg"].split())
        parts.append(f"'{'.'.join(loc)}': {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def _verdict_dict(item) -> dict[str, Any]:
    d = asdict(item)
    d.pop("anonymized", None)
    d.pop("original", None)
    d.pop("key", None)
    d.pop("reviewed", None)
    return d


def create_app(settings: ServiceSettings | None = None):
    """The FastAPI app (uvicorn runs it: ``anonlens serve``)."""
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    settings = settings or ServiceSettings()
    _raise_spool_limit(settings.max_request_bytes)
    admission = Admission(settings.max_concurrent)
    # one compute thread: the models are shared and each uses every core, so one image is worked on
    # at a time; a single thread also keeps the allocator from growing one arena per request thread
    compute = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="anonlens-compute")
    state: dict[str, Any] = {"ready": not settings.preload}

    def preload() -> None:
        cached_anonymizer(AnonymizeConfig())
        pair_checker(0.6, 0.2, 0.5)
        state["ready"] = True

    @asynccontextmanager
    async def lifespan(app):
        if settings.preload:
            await asyncio.get_running_loop().run_in_executor(compute, preload)
        yield
        compute.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="anonlens",
        version=__version__,
        summary="Anonymize people in images and check how anonymous the result is. Nothing is stored.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their files from a CDN: offline, and blocked by the CSP
        redoc_url=None,  # the description is at /openapi.json
    )

    app.state.admission = admission  # the admitted-requests counter (health, tests)
    app.state.settings = settings

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        headers = dict(_HEADERS)
        if exc.status == 503:
            headers["Retry-After"] = "1"
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        """FastAPI's 422 for a form value of the wrong type or out of range, with one line first."""
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"error": _validation_line(detail), "detail": detail}, status_code=422, headers=dict(_HEADERS))

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in _HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    async def _work(fn, *args):
        """``fn(*args)`` on the compute thread, admitted or 503; library errors become 4xx, anything
        else a 500 that names only the error's type (never the image or its name)."""
        try:
            with admission:
                return await asyncio.get_running_loop().run_in_executor(compute, fn, *args)
        except Busy as exc:
            raise ServiceError(503, str(exc)) from None
        except ServiceError:
            raise
        except UnknownNameError as exc:
            raise ServiceError(422, str(exc)) from None
        except AnonlensError as exc:
            raise ServiceError(422, str(exc)) from None
        except MemoryError:
            raise ServiceError(413, "out of memory for this image; send a smaller one") from None
        except Exception as exc:
            log.error("request failed: %s", type(exc).__name__)
            raise ServiceError(500, f"internal error ({type(exc).__name__}); nothing was returned") from None

    # -- the page and its files ---------------------------------------------------------------

    static = resources.files("anonlens.service") / "static"
    page = {name: (static / name).read_bytes() for name in ("index.html", "app.js", "style.css")}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> Response:
        return Response(page["index.html"], media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        types = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
        if name not in types:
            raise ServiceError(404, f"no such file: {name}")
        return Response(page[name], media_type=types[name])

    # -- the API ------------------------------------------------------------------------------

    @app.get("/health", summary="Liveness and readiness", tags=["service"])
    def health() -> dict[str, Any]:
        """``ready`` is true once the default models are loaded."""
        return {"status": "ok", "version": __version__, "ready": state["ready"], "busy": admission.active,
                "max_concurrent": admission.limit}

    @app.get("/options", summary="What the API and the page accept", tags=["service"])
    def options() -> dict[str, Any]:
        ops = [n for n in OPERATORS.names() if not OPERATORS.get(n).tags.get("extra") or has_extra(OPERATORS.get(n).tags["extra"])]
        ops = [n for n in ops if n != "agan"]  # needs a generator checkpoint on the server's disk
        return {"scopes": list(SCOPES), "operators": ops, "detectors": [n for n in DETECTORS.names() if n != "boxes"],
                "formats": sorted({_EXT[f] for f in SUPPORTED_FORMATS if f in _EXT}),
                "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                           "max_concurrent": settings.max_concurrent}}

    @app.post(
        "/anonymize",
        summary="Anonymize one image",
        tags=["anonymize"],
        responses={
            200: {"description": "The anonymized image in the input's format (or JSON with `response=json`); "
                                 "headers X-Anonlens-Verdict, X-Anonlens-Status, X-Anonlens-Regions.",
                  "content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}, "image/bmp": {}, "image/tiff": {},
                              "image/heic": {}, "image/avif": {},
                              "application/json": {}}},
            409: {"description": "The check still finds the person (or text) in the anonymized image: nothing is returned"},
            413: {"description": "The upload is over the size or pixel limit"},
            415: {"description": "Not an image type the service takes"},
            422: {"description": "A corrupt image, or a bad option"},
            503: {"description": "Busy: retry shortly"},
        },
    )
    async def anonymize_endpoint(
        file: UploadFile = File(..., description="The image (JPEG, PNG, WebP, BMP, TIFF, HEIC, AVIF)"),
        scope: str = Form("face", description=f"What to anonymize: {', '.join(SCOPES)} (all = person,text)"),
        operator: str = Form("blur", description="blur, pixelate, mask, noise, dp-pix, inpaint (see GET /options)"),
        detector: Optional[str] = Form(None, description="A detector name (default: centerface for faces, ssd-person for bodies)"),
        threshold: Optional[float] = Form(None, allow_inf_nan=False, description="Detector score threshold: in (0, 1) for "
                                          "centerface and text; hog-person's is an SVM margin (0 by default). Out of the "
                                          "detector's range: 422"),
        shape: Optional[Literal["ellipse", "box", "mask", "auto"]] = Form(None),
        margin: Optional[float] = Form(None, ge=0, le=MAX_MARGIN, description="Grow each region by this fraction of its size"),
        seed: Optional[int] = Form(None, description="Seed for the random operators"),
        on_empty: Literal["keep", "full"] = Form("keep", description="Nothing found: keep the image (verdict nothing-found: "
                                                                     "review it) or anonymize the whole frame"),
        verify: bool = Form(True, description="Re-detect faces in the anonymized regions and strengthen"),
        check: bool = Form(True, description="Check the result like `anonlens check` and refuse (409) an identifiable one"),
        operator_option: Optional[List[str]] = Form(None, description="key=value, e.g. strength=0.3"),
        detector_option: Optional[List[str]] = Form(None, description="key=value, e.g. max_side=1280"),
        response: Literal["image", "json"] = Form("image", description="image: the file; json: the image (base64), "
                                                                         "the regions, the record and the verdict"),
    ):
        """Anonymize the image; return it in its own format, without metadata."""
        data = await _read_upload(file, "file", settings)
        if operator == "agan":
            raise ServiceError(422, "operator 'agan' needs a generator checkpoint on the server; use the CLI")
        try:
            config = _config(detector_option, operator_option, threshold=threshold, seed=seed, scope=scope, detector=detector,
                             operator=operator, shape=shape, margin=margin, on_empty=on_empty, verify=verify)
        except (AnonlensError, ValueError, TypeError) as exc:
            raise ServiceError(422, str(exc)) from None

        def run():
            try:  # the detector and operator, built with the client's options (cached): a bad value is the client's
                cached_anonymizer(config)
            except (OptionError, UnknownNameError, ValueError, TypeError) as exc:
                raise ServiceError(422, _one_line(exc)) from None
            with _image_errors("file"):
                made = anonymize_encoded(data, config, name="file", out_format=None, max_pixels=settings.max_pixels,
                                         jpeg_quality=settings.jpeg_quality)
            verdict = None
            if check:
                # text is always part of the verdict (a name tag identifies a person): with a scope
                # without text a readable text is not refused but returned for review, as the CLI does
                verdict = check_images(made.original, made.image, text=True, text_scope=config.has_text, people=config.reviews_people,
                                       original_alpha=made.original_alpha, anonymized_alpha=made.alpha,
                                       original_measured=(made.record.get("release_check") or {}).get("original"))
            return made, verdict

        made, verdict = await _work(run)
        rec = made.record
        verdict_name = verdict.verdict if verdict is not None else "not-checked"
        # left for a person's review, not refused: legible text with a scope without text, a person with no face found
        text_left = verdict is not None and ((not config.has_text and verdict.verdict == "text-readable")
                                             or verdict.verdict == "person-without-face")
        if verdict is not None and verdict.verdict in _REFUSED and not text_left:
            raise ServiceError(409, "the anonymized image is still identifiable: " + "; ".join(verdict.problems)
                               + ". Nothing was returned; try a stronger operator (mask) or a larger margin.",
                               verdict=verdict.verdict, problems=verdict.problems)
        media = SUPPORTED_FORMATS[made.format]
        filename = f"anonymized.{_EXT[made.format]}"
        headers = {**_HEADERS, "X-Anonlens-Verdict": verdict_name, "X-Anonlens-Status": rec["status"],
                   "X-Anonlens-Regions": str(len(rec.get("regions", [])))}
        if response == "json":
            body = {
                "status": rec["status"],
                "verdict": verdict_name,
                "problems": [] if verdict is None else verdict.problems,
                "review_needed": bool(rec.get("nothing_found") or rec.get("decode_errors") or text_left),
                "regions": rec.get("regions", []),
                "check": None if verdict is None else _verdict_dict(verdict),
                "record": rec,
                "image": {"media_type": media, "filename": filename, "base64": base64.b64encode(made.data).decode("ascii")},
            }
            return JSONResponse(body, headers=headers)
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(made.data, media_type=media, headers=headers)

    @app.post(
        "/check",
        summary="Check an original/anonymized pair",
        tags=["check"],
        responses={413: {"description": "An upload is over the size or pixel limit"}, 415: {"description": "Not an image type"},
                   422: {"description": "A corrupt image, sizes that differ, or a bad option"}, 503: {"description": "Busy"}},
    )
    async def check_endpoint(
        original: UploadFile = File(..., description="The original image"),
        anonymized: UploadFile = File(..., description="Its anonymized version (same size)"),
        threshold: float = Form(0.6, gt=0, le=2, description="Identity distance below which a face counts as re-identified (dlib: 0.6)"),
        text: bool = Form(True, description="Check that text found in the original is no longer readable (a name tag "
                                            "identifies a person); false leaves text out"),
    ) -> dict[str, Any]:
        """The release gate's verdict for one pair: per face in the original, the identity distance
        in the anonymized image and whether a face is still detected there."""
        orig_data = await _read_upload(original, "original", settings)
        anon_data = await _read_upload(anonymized, "anonymized", settings)

        def run():
            o = _decode(orig_data, "original", settings)
            a = _decode(anon_data, "anonymized", settings)
            return check_images(o.rgb, a.rgb, threshold=threshold, text=text, original_alpha=o.alpha, anonymized_alpha=a.alpha)

        verdict = await _work(run)
        return {"verdict": verdict.verdict, "passed": verdict.passed, **_verdict_dict(verdict)}

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)  # before any parsing
    app.add_middleware(AllowedHosts, hosts=settings.allowed_hosts)  # outermost: a foreign Host gets nothing else
    return app
