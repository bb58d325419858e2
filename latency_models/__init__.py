"""Device profiles, the latency meter, latency predictors per device and space, and accuracy reports."""

from __future__ import annotations

from latency_models.base import (
    LATENCY_MODELS,
    FitSample,
    LatencyModel,
    LatencyPrediction,
    get_latency_model_class,
    register_latency_model,
)
from latency_models.device import BUILTIN_DEVICES, DeviceProfile
from latency_models.meter import METERS, LatencyMeter, LatencySample, MeterSettings, make_meter, register_meter

__all__ = [
    "BUILTIN_DEVICES",
    "LATENCY_MODELS",
    "DeviceProfile",
    "FitSample",
    "LatencyMeter",
    "METERS",
    "make_meter",
    "register_meter",
    "LatencyModel",
    "LatencyPrediction",
    "LatencySample",
    "MeterSettings",
    "get_latency_model_class",
    "register_latency_model",
]
