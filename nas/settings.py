"""Service settings from the environment (`HWNAS_` prefix). Built by callers, never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HWNAS_", extra="ignore")

    data_dir: Path = Field(default=Path("hwnas-data"), description="SQLite file and artifacts (embedded default)")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite in data_dir")
    ray_address: str | None = Field(default=None, description="Ray cluster address; default a local Ray")
    executor: Literal["ray", "in-process"] = "ray"
    max_parallel_trials: int | None = Field(default=None, ge=1, le=10_000)
    training_threads: int = Field(default=1, ge=1, le=256)
    lease_ttl_s: float = Field(default=60.0, gt=0.5, le=86_400)
    meter_warmup: int = Field(default=3, ge=0, le=1000)
    meter_repeats: int = Field(default=5, ge=1, le=10_000)
    meter_rounds: int = Field(default=3, ge=1, le=1000)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'hwnas.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return (self.data_dir / "artifacts").resolve()
