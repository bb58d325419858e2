"""Export a trained trial as a Hugging Face folder plus a reproducible archive with its sha256."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.db.records import CheckpointRecord, TrialRecord
from nas.db.storage import Storage
from nas.engine.bound_job import BoundJob
from search_spaces.arch import Arch
from search_spaces.errors import ConflictError
from workers.artifact_store import ArtifactStore


@dataclass(frozen=True)
class ExportedCheckpoint:
    path: Path
    archive_path: Path
    sha256: str
    size_bytes: int


def _baseline_rows(baseline: dict[str, Any] | None, metric_name: str) -> str:
    if not baseline:
        return ""
    latency = baseline.get("latency_ms")
    return (f"| baseline (unpruned teacher) {metric_name} | {baseline['metric']:.4f} |\n"
            f"| baseline latency | {f'{latency:.3f} ms' if latency is not None else 'not measured'} |\n"
            f"| baseline fine-tuning steps | {baseline.get('teacher_steps')} |\n")


def _metrics_text(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())
                     if isinstance(value, (int, float)))


def _onnx_section(onnx: dict[str, Any] | None, latency_ms: float | None) -> str:
    if not onnx:
        return ""
    latency = f"{latency_ms:.3f} ms" if latency_ms is not None else "not measured"
    quantized = ""
    if onnx.get("quantization"):
        quantized = (f"\n\n**Quantised**: {onnx['quantization']}; the float32 graph was checked as above, then "
                     f"quantised (largest absolute difference of the int8 graph's output: "
                     f"{onnx['int8_max_abs_difference']:.3g}). On the validation data: "
                     f"{_metrics_text(onnx['quantized_metrics'])} int8, against "
                     f"{_metrics_text(onnx['float32_metrics'])} float32 (torch).")
    return f"""
## ONNX Runtime
`{onnx['file']}` (batch and length dynamic) was checked against the torch model on inputs of shape
{onnx['checked_on']}: largest absolute difference {onnx['max_abs_difference']:.3g} (tolerance
{onnx['tolerance']:.3g}). ONNX Runtime {onnx['onnxruntime_version']}; the measured latency, {latency}, is ONNX
Runtime's on this device profile.{quantized}

```python
import onnxruntime
session = onnxruntime.InferenceSession(PATH + "/{onnx['file']}")
logits = session.run(None, {{"input_ids": input_ids}})[0]  # numpy int64 ids; other inputs by name
```
"""


def model_card(*, job: BoundJob, trial: TrialRecord, latency_ms: float | None, protocol: dict[str, Any] | None,
               data: dict[str, Any], baseline: dict[str, Any] | None, onnx: dict[str, Any] | None = None) -> str:
    spec, metric_name, auto_class = job.spec, job.task.metric_name, job.space.auto_class
    arch = json.dumps(trial.arch["config"], indent=2, sort_keys=True)
    latency = f"{latency_ms:.3f} ms" if latency_ms is not None else "not measured"
    others = "".join(f"| {name} (validation) | {value:.4f} |\n" for name, value in sorted((trial.metrics or {}).items())
                     if name != metric_name)
    return f"""---
library_name: transformers
tags: [hwnas, neural-architecture-search, {spec.space}]
---
# hwnas checkpoint: job {job.job_id}, trial {trial.number}

Found by hwnas (space `{spec.space}`, strategy `{spec.strategy}`, seed {spec.seed}) under a latency target of
{spec.latency_target_ms} ms on device profile `{spec.device}`.

| | |
|---|---|
| {metric_name} (validation) | {trial.metric:.4f} |
{others}{_baseline_rows(baseline, metric_name)}| measured latency (median) | {latency} |
| parameters | {trial.params} |
| training steps | {spec.budget.train_steps} |
| arch hash | `{trial.arch_hash}` |

## Latency measurement protocol
```json
{json.dumps(protocol or {}, indent=2, sort_keys=True)}
```

## Architecture
```json
{arch}
```

## Data
```json
{json.dumps(data, indent=2, sort_keys=True)}
```

## Loading
```python
from transformers import {auto_class}, AutoTokenizer, pipeline
model = {auto_class}.from_pretrained(PATH, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(PATH)
{PIPELINE_USAGE.get(auto_class, "")}
```
{_onnx_section(onnx, latency_ms)}"""


PIPELINE_USAGE = {  # what a user runs first, by the export's auto class
    "AutoModelForCausalLM": 'generate = pipeline("text-generation", model=PATH, trust_remote_code=True)\n'
                            'print(generate("def main():", max_new_tokens=40)[0]["generated_text"])',
    "AutoModelForSequenceClassification": 'classify = pipeline("text-classification", model=PATH, '
                                          'trust_remote_code=True)\nprint(classify("a fine, moving film"))',
}


def deterministic_archive(folder: Path, archive_path: Path) -> tuple[str, int]:
    """A .tar.gz of `folder` whose bytes depend only on file names and contents; returns (sha256, size)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(str(Path(folder.name) / path.relative_to(folder)))
            info.size = path.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    with archive_path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    data = archive_path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def export_trial(job: BoundJob, *, trial: TrialRecord, out_dir: Path, latency_ms: float | None,
                 protocol: dict[str, Any] | None, data: dict[str, Any], baseline: dict[str, Any] | None,
                 ) -> ExportedCheckpoint:
    """Rebuild the trial's network, load its trained weights, and write the checkpoint folder and archive."""
    from safetensors.torch import load_file
    from transformers.utils import logging as hf_logging

    if trial.state != "complete" or not trial.weights_path or not Path(trial.weights_path).is_file():
        raise ConflictError(f"trial {trial.number} of job {job.job_id} has no trained weights (state "
                            f"{trial.state}); export a complete trial")
    hf_logging.disable_progress_bar()
    task, space = job.task, job.space
    arch = Arch.from_dict(trial.arch)
    model = space.build(arch, seed=0)
    model.load_state_dict(load_file(trial.weights_path), strict=True)
    model.eval()
    out_dir = Path(out_dir).resolve()
    onnx = None
    staging = out_dir.parent / f".{out_dir.name}.onnx"
    if job.device.backend == "onnxruntime-cpu":  # deployed with ONNX Runtime: ship the graph it was timed as
        from latency_models.onnx_runtime import OrtModule, export_checked

        device = job.device
        staging.parent.mkdir(parents=True, exist_ok=True)
        onnx = export_checked(model, space.example_inputs(arch, batch_size=max(2, device.batch_size),
                                                          seq_len=device.seq_len), staging, dtype=device.dtype)
        if device.dtype == "int8":  # what the quantisation costs on the task, measured on its validation data
            onnx["quantized_metrics"] = task.evaluate_all(OrtModule(staging, config=getattr(model, "config", None)))
            onnx["float32_metrics"] = trial.metrics or {task.metric_name: trial.metric}
    card = model_card(job=job, trial=trial, latency_ms=latency_ms, protocol=protocol, data=data, baseline=baseline,
                      onnx=onnx)
    space.export(model, arch, out_dir, model_card=card)
    if onnx is not None:
        staging.replace(out_dir / onnx["file"])
    task.save_tokenizer(out_dir)
    (out_dir / "hwnas.json").write_text(json.dumps({
        "job_id": job.job_id, "trial": trial.number, "arch": trial.arch, "metric_name": task.metric_name,
        "metric": trial.metric, "metrics": trial.metrics, "latency_ms": latency_ms, "protocol": protocol,
        "params": trial.params, "baseline": baseline, "onnx": onnx,
    }, indent=2, sort_keys=True), encoding="utf-8")
    archive = out_dir.parent / (out_dir.name + ".tar.gz")
    sha256, size = deterministic_archive(out_dir, archive)
    return ExportedCheckpoint(path=out_dir, archive_path=archive, sha256=sha256, size_bytes=size)


def export_lock(out_dir: Path) -> Any:
    """A lock (across threads and the API's worker processes) on exporting into `out_dir`: two requests for
    the same trial export it once, and the second answers with the first's checkpoint."""
    from filelock import FileLock

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(out_dir.parent / f".{out_dir.name}.lock"), timeout=600)


def existing_checkpoint(storage: Storage, job_id: int, trial_id: int, *,
                        store: ArtifactStore | None = None) -> CheckpointRecord | None:
    """The trial's newest checkpoint whose archive is still on disk (or, with an object store, in it), if any."""
    for row in reversed(storage.checkpoints(job_id)):
        if row.trial_id == trial_id and (Path(row.archive_path).is_file()
                                         or (store is not None and store.pull(row.archive_path))):
            return row
    return None


def checkpoint_dir(artifacts_dir: Path, job_id: int, trial_number: int) -> Path:
    """Where a job's trial is exported in the service's artifacts (by the job's end and on request alike)."""
    return artifacts_dir / f"job-{job_id}" / f"checkpoint-trial-{trial_number}"


def export_once(storage: Storage, job: BoundJob, *, trial: TrialRecord, latency_ms: float,
                out_dir: Path, store: ArtifactStore | None = None) -> tuple[CheckpointRecord, bool]:
    """The trial's checkpoint: the stored one when its archive is still there, else exported into `out_dir`
    (replacing a half-written folder) and recorded. The check and the export hold `export_lock(out_dir)`, so
    concurrent callers export once. Returns (checkpoint row, created)."""
    with export_lock(out_dir):
        row = existing_checkpoint(storage, job.job_id, trial.id, store=store)
        if row is not None:
            return row, False
        if out_dir.exists():
            shutil.rmtree(out_dir)  # a half-written export from an interrupted request
        row = export_and_record(storage, job, trial=trial, latency_ms=latency_ms, out_dir=out_dir, store=store)
    return row, True


def export_and_record(storage: Storage, job: BoundJob, *, trial: TrialRecord, latency_ms: float,
                      out_dir: Path, store: ArtifactStore | None = None) -> CheckpointRecord:
    """Export `trial` with the protocol of its latest latency sample, and store the checkpoint's row (with an
    object store: the trial's weights fetched first, the folder and archive shared after)."""
    protocol = storage.latest_sample_protocol(trial.id)
    row = storage.get_job(job.job_id)
    if store is not None and trial.weights_path:
        store.pull(trial.weights_path)
    exported = export_trial(job, trial=trial, out_dir=out_dir, latency_ms=latency_ms, protocol=protocol,
                            data=row.data_info or {},
                            baseline=row.baseline.to_dict() if row.baseline else None)
    if store is not None:
        store.push(exported.path)
        store.push(exported.archive_path)
    return storage.add_checkpoint(job_id=job.job_id, trial_id=trial.id, path=str(exported.path),
                                  archive_path=str(exported.archive_path), sha256=exported.sha256,
                                  size_bytes=exported.size_bytes, measured_latency_ms=latency_ms)
