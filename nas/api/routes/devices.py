"""Device profiles and the latency models fitted on them, with their accuracy reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from nas.api.routes.jobs import ERRORS
from nas.api.schemas import DeviceIn, DeviceOut, LatencyModelOut
from nas.api.security import AdminToken, ReadToken, StorageDep
from nas.db.storage import Storage
from latency_models.device import DeviceProfile
from nas.service import latency_model_view

router = APIRouter(tags=["devices"])

DeviceName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def _device(storage: Storage, name: str) -> dict[str, Any]:
    return {**storage.device(name).model_dump(),
            "latency_models": [latency_model_view(r) for r in storage.latency_models(device=name, with_payload=False)]}


@router.get("/devices", response_model=list[DeviceOut], responses=ERRORS, summary="Device profiles")
def list_devices(storage: StorageDep, _: ReadToken) -> list[dict[str, Any]]:
    return [_device(storage, p.name) for p in storage.list_devices()]


@router.get("/devices/{name}", response_model=DeviceOut, responses=ERRORS,
            summary="A device profile with its latency models and their reports")
def get_device(name: DeviceName, storage: StorageDep, _: ReadToken) -> dict[str, Any]:
    return _device(storage, name)


@router.post("/devices", status_code=201, response_model=DeviceOut, responses=ERRORS,
             summary="Add a device profile (admin)")
def add_device(profile: DeviceIn, storage: StorageDep, _: AdminToken) -> dict[str, Any]:
    storage.add_device(DeviceProfile(**profile.model_dump(exclude={"builtin"})))
    return _device(storage, profile.name)


@router.get("/latency-models", response_model=list[LatencyModelOut], responses=ERRORS,
            summary="Stored latency models, newest first")
def list_latency_models(storage: StorageDep, _: ReadToken,
                        device: Annotated[str | None, Query(max_length=64)] = None,
                        space: Annotated[str | None, Query(max_length=64)] = None) -> list[dict[str, Any]]:
    return [latency_model_view(r) for r in storage.latency_models(device=device, space=space, with_payload=False)]


@router.get("/latency-models/{model_id}", response_model=LatencyModelOut, responses=ERRORS,
            summary="One latency model with its accuracy report (held-out predicted against measured)")
def get_latency_model(model_id: Annotated[int, Path(ge=1, le=2**31 - 1)], storage: StorageDep,
                      _: ReadToken) -> dict[str, Any]:
    return latency_model_view(storage.latency_model(model_id, with_payload=False))
