"""The web service and page (``anonlens serve``): anonymize and check images over HTTP, with
nothing stored. Needs the ``service`` extra (FastAPI, uvicorn, python-multipart)."""

from .app import SUPPORTED_FORMATS, ServiceSettings, create_app

__all__ = ["create_app", "ServiceSettings", "SUPPORTED_FORMATS"]
