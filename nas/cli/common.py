"""What every CLI command shares: the local storage, the server client when HWNAS_URL is set, JSON output."""

from __future__ import annotations

import json
from typing import Any

import typer

from nas.settings import Settings


def storage() -> Any:
    from nas.service import storage_for

    return storage_for(Settings())


def artifact_store() -> Any:
    """The artifacts' object store (a no-op without HWNAS_ARTIFACTS_URL), for commands on the local database."""
    return Settings().artifact_store()


def client() -> Any:
    """A client of the server named by HWNAS_URL and HWNAS_TOKEN, or None to work on the local database."""
    settings = Settings()
    if not settings.url:
        return None
    from nas.client import HwnasClient

    return HwnasClient.from_settings(settings)


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
