"""The hwnas HTTP API and web page (FastAPI)."""

from nas.api.app import create_app

__all__ = ["create_app"]
