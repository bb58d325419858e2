"""ONNX Runtime as a device backend: a model is exported to ONNX and timed by an `InferenceSession`.

`onnxruntime-cpu` profiles are measured by `OnnxRuntimeCpuMeter`: each model (an arch's network, or a
lookup-table block) is exported with torch's ONNX exporter (the dynamo exporter; every input's length is
dynamic), loaded into a session on ONNX Runtime's CPU execution provider with the profile's intra-op
threads (and one inter-op thread, sequential execution), and timed by `session.run` with the same
interleaved rounds as torch. The mixture-of-experts block exports a formulation ONNX Runtime runs sparsely
(`MixtureOfExperts._per_expert`: per expert, the rows routed to it found with NonZero, gathered, multiplied
and scattered back), so a token costs only its top-k experts there too. Forward workloads, float32 or
int8 (the float32 graph quantised by ONNX Runtime's dynamic quantisation: int8 weights, activations quantised
per call).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_models.meter import LatencyMeter, register_meter
from search_spaces.errors import LatencyError

if TYPE_CHECKING:
    from torch import Tensor, nn

logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # its optimiser logs every initializer it merges


def _main_output(out: Any) -> Tensor:
    """A module's main output: `logits` of a transformers output, else the tensor itself."""
    return out.logits if hasattr(out, "logits") else out


def _positional(model: nn.Module, names: list[str]) -> nn.Module:
    """`model` called with its inputs in `names`' order, returning its main output (`logits` of a
    transformers output, else the tensor itself)."""
    import torch

    class MainOutput(torch.nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: Tensor) -> Tensor:
            return _main_output(self.inner(**dict(zip(names, tensors))))

    return MainOutput(model)


def export_onnx(model: nn.Module, inputs: Mapping[str, Tensor], path: Path) -> Path:
    """Export `model` (called with `inputs` as keywords) to `path`, each input's batch and length dynamic (a
    batch of 1 in `inputs` fixes it); the graph's inputs carry the same names."""
    import torch

    names = list(inputs)
    args = tuple(inputs[name] for name in names)
    auto = torch.export.Dim.AUTO  # dynamic where the example allows (a batch of 1 stays 1)
    dynamic = tuple({0: auto, 1: auto} if value.dim() > 1 else {} for value in args)
    try:  # the exporter prints its progress on stdout, where a command's output (`--json`) goes
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(_positional(model.eval(), names), args, dynamo=True, verbose=False,
                                        input_names=names, output_names=["output"], dynamic_shapes=(dynamic,),
                                        report=False)
    except Exception as exc:  # noqa: BLE001  (the exporter raises many kinds; say which model and why)
        raise LatencyError(f"ONNX export of {type(model).__name__} failed: {str(exc).splitlines()[0][:300]}") from exc
    assert program is not None
    program.save(str(path))
    return path


ONNX_DTYPES = ("float32", "int8")


def quantize_int8(source: Path, target: Path) -> Path:
    """ONNX Runtime's dynamic quantisation of `source` into `target`: MatMul and Gemm weights stored as int8,
    activations quantised per call (no calibration data needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its node counts
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001
        raise LatencyError(f"int8 quantisation of {source.name} failed: {str(exc).splitlines()[0][:300]}") from exc
    return target


class OrtModel:
    """An ONNX Runtime session called like a module: `model(**numpy_inputs)`."""

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, **inputs: Any) -> Any:
        return self.session.run(None, {k: v for k, v in inputs.items() if k in self.input_names})[0]


@register_meter("onnxruntime-cpu")
class OnnxRuntimeCpuMeter(LatencyMeter):
    """ONNX Runtime's CPU execution provider (see the module's docstring)."""

    def place(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> tuple[Any, Mapping[str, Any]]:
        if self.device.dtype not in ONNX_DTYPES:
            raise LatencyError(f"device profile {self.device.name!r}: ONNX Runtime profiles are float32 or int8 "
                               f"(dynamic quantisation); got {self.device.dtype}")
        if self.device.workload != "forward":
            raise LatencyError(f"device profile {self.device.name!r}: ONNX Runtime profiles time forward passes; "
                               "use a torch profile for decode latency")
        with tempfile.TemporaryDirectory(prefix="hwnas-onnx-") as folder:
            path = export_onnx(model, inputs, Path(folder) / "model.onnx")
            if self.device.dtype == "int8":
                path = quantize_int8(path, Path(folder) / "model-int8.onnx")
            session = OrtModel(path, threads=self.device.threads)  # the session holds the model in memory
        return session, {k: v.detach().cpu().numpy() for k, v in inputs.items()}


ONNX_FILE = "model.onnx"


def export_checked(model: nn.Module, inputs: Mapping[str, Tensor], path: Path, *, dtype: str = "float32",
                   relative_tolerance: float = 1e-4) -> dict[str, Any]:
    """Export `model` to `path` and check that ONNX Runtime gives its outputs on `inputs` within
    `relative_tolerance` of their largest magnitude; the facts a checkpoint's card states (the graph is
    `ONNX_FILE` in the checkpoint, wherever `path` stages it). `dtype` int8: the float32 graph is checked so,
    then quantised into `path`; the quantised graph's difference is reported, not bounded (its effect on the
    task's metric is what tells: `quantised_metric`)."""
    import numpy as np
    import onnxruntime
    import torch

    float_path = path.with_name(path.stem + "-float32.onnx") if dtype == "int8" else path
    export_onnx(model, inputs, float_path)
    numpy_inputs = {k: v.detach().cpu().numpy() for k, v in inputs.items()}
    with torch.no_grad():
        expected = _main_output(model(**inputs)).float().numpy()
    got = OrtModel(float_path, threads=1)(**numpy_inputs)
    difference = float(np.abs(got - expected).max())
    tolerance = relative_tolerance * max(1.0, float(np.abs(expected).max()))
    if not difference <= tolerance:
        raise LatencyError(f"the ONNX export differs from the torch model by {difference:.3g} (tolerance "
                           f"{tolerance:.3g}); it is not exported")
    facts: dict[str, Any] = {"file": ONNX_FILE, "onnxruntime_version": onnxruntime.__version__,
                             "max_abs_difference": difference, "tolerance": tolerance,
                             "checked_on": {k: list(v.shape) for k, v in inputs.items()}, "dtype": dtype}
    if dtype == "int8":
        quantize_int8(float_path, path)
        float_path.unlink()
        facts["quantization"] = "dynamic int8 (onnxruntime.quantization.quantize_dynamic, QInt8 weights)"
        facts["int8_max_abs_difference"] = float(np.abs(OrtModel(path, threads=1)(**numpy_inputs) - expected).max())
    return facts


class OrtModule:
    """An ONNX graph in ONNX Runtime called like the torch model it came from (`model(**tensors).logits`), so
    that a task scores it with its own `evaluate_all`."""

    def __init__(self, path: Path, *, config: Any = None, threads: int = 1) -> None:
        self.session = OrtModel(path, threads=threads)
        self.config = config  # the torch model's (a task reads its limits, e.g. max_seq_len)
        self.training = False

    def eval(self) -> OrtModule:
        return self

    def parameters(self) -> Any:
        return iter(())

    def __call__(self, **inputs: Any) -> Any:
        import types

        import torch

        arrays = {k: v.detach().cpu().numpy() for k, v in inputs.items() if hasattr(v, "detach")}
        return types.SimpleNamespace(logits=torch.from_numpy(self.session(**arrays)))
