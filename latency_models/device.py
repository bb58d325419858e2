"""Device profiles: where and how latency is measured."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Backend = Literal["torch-cpu", "cuda", "onnxruntime-cpu"]
# Ray's own resource names: a profile named like one would be scheduled on every node.
RESERVED_NAMES = frozenset({"cpu", "gpu", "memory", "object_store_memory"})


class DeviceProfile(BaseModel):
    """A measurement protocol's fixed part: backend, threads, batch, sequence length and dtype.

    Every latency sample stores the profile it was measured under.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    backend: Backend = "torch-cpu"
    threads: int = Field(default=1, ge=1, le=256)
    batch_size: int = Field(default=1, ge=1, le=4096)
    seq_len: int = Field(default=64, ge=1, le=65536)
    dtype: Literal["float32", "bfloat16", "float16", "int8"] = Field(
        default="float32", description="int8: ONNX Runtime profiles only, dynamic quantisation (int8 weights, "
        "activations quantised at run time)")
    workload: Literal["forward", "decode"] = Field(
        default="forward", description="what is timed: one forward pass over `seq_len` tokens, or (decode) the "
        "per-token latency of generating `decode_tokens` tokens after a `seq_len`-token prompt with the key-value "
        "cache (causal language-model spaces)")
    decode_tokens: int = Field(default=32, ge=1, le=65536, description="decode: tokens generated per timed run")
    builtin: bool = False

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_NAMES:
            raise ValueError(f"{value!r} is a resource name Ray reserves; Ray nodes advertise a device profile "
                             "under its name, so pick another (for example 'cpu-4t')")
        return value

    @model_validator(mode="after")
    def _int8_on_onnx_runtime(self) -> DeviceProfile:
        if self.dtype == "int8" and self.backend != "onnxruntime-cpu":
            raise ValueError(f"dtype: int8 (dynamic quantisation) is measured with ONNX Runtime only, got backend "
                             f"{self.backend!r}; use backend onnxruntime-cpu, or dtype float32")
        return self

    @property
    def decode_context(self) -> int:
        """Decode: the mean number of cached positions a generated token attends to."""
        return self.seq_len + self.decode_tokens // 2

    @property
    def ray_resource(self) -> str:
        """The Ray custom resource a node carries when it has this device."""
        return self.name

    def describes_this_machine(self) -> bool:
        """Whether this process can measure under this profile itself."""
        if self.backend == "torch-cpu":
            import os

            return self.threads <= (os.cpu_count() or 1)
        if self.backend == "cuda":
            import torch

            return bool(torch.cuda.is_available())
        if self.backend == "onnxruntime-cpu":
            import importlib.util
            import os

            return importlib.util.find_spec("onnxruntime") is not None and self.threads <= (os.cpu_count() or 1)
        return False


BUILTIN_DEVICES: dict[str, DeviceProfile] = {
    "cpu-1t": DeviceProfile(name="cpu-1t", backend="torch-cpu", threads=1, batch_size=1, seq_len=64, builtin=True),
    "cpu-2t": DeviceProfile(name="cpu-2t", backend="torch-cpu", threads=2, batch_size=1, seq_len=64, builtin=True),
    "cpu-1t-seq128": DeviceProfile(name="cpu-1t-seq128", backend="torch-cpu", threads=1, batch_size=1, seq_len=128,
                                   builtin=True),
}
