"""Device profiles, latency samples and stored latency models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import defer

from latency_models.device import BUILTIN_DEVICES, DeviceProfile
from nas.db.base_storage import StorageBase
from nas.db.models import DeviceProfileRow, LatencyModelRow, LatencySampleRow, utcnow
from nas.db.records import LatencyModelRecord, LatencySampleRecord, from_row
from search_spaces.errors import ConflictError, NotFoundError


def _model_record(row: LatencyModelRow, *, with_payload: bool) -> LatencyModelRecord:
    values = {f.name: getattr(row, f.name) for f in fields(LatencyModelRecord) if f.name != "payload"}
    return LatencyModelRecord(**values, payload=row.payload if with_payload else None)


class LatencyStore(StorageBase):
    def ensure_builtin_devices(self) -> None:
        """Insert the built-in profiles unless present (safe when several processes start at once)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        with self.session() as s:
            for profile in BUILTIN_DEVICES.values():
                s.execute(insert(DeviceProfileRow).values(**profile.model_dump(), created_at=utcnow())
                          .on_conflict_do_nothing(index_elements=["name"]))

    @staticmethod
    def _profile(row: DeviceProfileRow) -> DeviceProfile:
        return DeviceProfile(name=row.name, backend=row.backend, threads=row.threads,  # type: ignore[arg-type]
                             batch_size=row.batch_size, seq_len=row.seq_len, dtype=row.dtype,  # type: ignore[arg-type]
                             workload=row.workload, decode_tokens=row.decode_tokens,  # type: ignore[arg-type]
                             builtin=row.builtin)

    def device(self, name: str) -> DeviceProfile:
        with self.session() as s:
            row = s.get(DeviceProfileRow, name)
            if row is None:
                raise NotFoundError(f"device profile {name!r} does not exist", resource="device")
            return self._profile(row)

    def add_device(self, profile: DeviceProfile) -> None:
        with self.session() as s:
            if s.get(DeviceProfileRow, profile.name) is not None:
                raise ConflictError(f"device profile {profile.name!r} already exists; pick another name")
            s.add(DeviceProfileRow(**profile.model_dump(exclude={"builtin"}), builtin=False))

    def list_devices(self) -> list[DeviceProfile]:
        with self.session() as s:
            return [self._profile(r) for r in s.scalars(select(DeviceProfileRow).order_by(DeviceProfileRow.name))]

    def add_latency_sample(self, *, device: str, space: str, space_version: int, arch_hash: str,
                           arch: dict[str, Any], sample: dict[str, Any], purpose: str, job_id: int | None,
                           trial_id: int | None) -> None:
        with self.session() as s:
            s.add(self._sample_row(device=device, space=space, space_version=space_version, arch_hash=arch_hash,
                                   arch=arch, sample=sample, purpose=purpose, job_id=job_id, trial_id=trial_id))

    @staticmethod
    def _sample_row(*, device: str, space: str, space_version: int, arch_hash: str, arch: dict[str, Any],
                    sample: dict[str, Any], purpose: str, job_id: int | None = None,
                    trial_id: int | None = None) -> LatencySampleRow:
        return LatencySampleRow(device=device, space=space, space_version=space_version, arch_hash=arch_hash,
                                arch=arch, median_ms=sample["median_ms"], p10_ms=sample["p10_ms"],
                                p90_ms=sample["p90_ms"], runs=sample["runs"], protocol=sample["protocol"],
                                purpose=purpose, job_id=job_id, trial_id=trial_id)

    def add_profile_samples(self, *, device: str, space: str, space_version: int,
                            samples: Sequence[dict[str, Any]]) -> None:
        """Store a profiling run's samples (`arch`, `arch_hash`, `sample`, `purpose` each) in one transaction."""
        with self.session() as s:
            s.add_all(self._sample_row(device=device, space=space, space_version=space_version,
                                       arch_hash=item["arch_hash"], arch=item["arch"], sample=item["sample"],
                                       purpose=item["purpose"])
                      for item in samples)

    def add_latency_model(self, *, device: str, space: str, space_version: int, space_key: str,
                          space_signature: dict[str, Any], kind: str, payload: bytes, report: dict[str, Any]) -> int:
        with self.session() as s:
            row = LatencyModelRow(device=device, space=space, space_version=space_version, space_key=space_key,
                                  space_signature=space_signature, kind=kind, payload=payload, report=report)
            s.add(row)
            s.flush()
            return row.id

    def latency_models(self, *, device: str | None = None, space: str | None = None,
                       space_key: str | None = None, with_payload: bool = True) -> list[LatencyModelRecord]:
        """Stored latency models, newest first; `with_payload=False` leaves the pickled predictor unread."""
        with self.session() as s:
            query = select(LatencyModelRow)
            if not with_payload:
                query = query.options(defer(LatencyModelRow.payload, raiseload=True))
            if device is not None:
                query = query.where(LatencyModelRow.device == device)
            if space is not None:
                query = query.where(LatencyModelRow.space == space)
            if space_key is not None:
                query = query.where(LatencyModelRow.space_key == space_key)
            return [_model_record(row, with_payload=with_payload)
                    for row in s.scalars(query.order_by(LatencyModelRow.id.desc()))]

    def latency_model(self, model_id: int, *, with_payload: bool = True) -> LatencyModelRecord:
        with self.session() as s:
            options = [] if with_payload else [defer(LatencyModelRow.payload, raiseload=True)]
            row = s.get(LatencyModelRow, model_id, options=options)
            if row is None:
                raise NotFoundError(f"latency model {model_id} does not exist", resource="latency model")
            return _model_record(row, with_payload=with_payload)

    def latency_samples(self, *, job_id: int) -> list[LatencySampleRecord]:
        with self.session() as s:
            return [from_row(LatencySampleRecord, row) for row in s.scalars(
                select(LatencySampleRow).where(LatencySampleRow.job_id == job_id).order_by(LatencySampleRow.id))]

    def latest_sample_protocol(self, trial_id: int) -> dict[str, Any] | None:
        """The measurement protocol of the trial's newest latency sample, if it was measured."""
        with self.session() as s:
            return s.scalar(select(LatencySampleRow.protocol).where(LatencySampleRow.trial_id == trial_id)
                            .order_by(LatencySampleRow.id.desc()).limit(1))

    def latency_models_by_id(self, model_ids: Sequence[int]) -> dict[int, LatencyModelRecord]:
        """Latency models (without their pickled predictors), in one query."""
        if not model_ids:
            return {}
        with self.session() as s:
            rows = s.scalars(select(LatencyModelRow).options(defer(LatencyModelRow.payload, raiseload=True))
                             .where(LatencyModelRow.id.in_(list(model_ids))))
            return {row.id: _model_record(row, with_payload=False) for row in rows}
