"""What int8 costs and buys on ONNX Runtime (issue 18): the task's metric and the latency of real trained
models in torch, in ONNX Runtime float32 and in ONNX Runtime int8 (dynamic quantisation).

Takes a hwnas data folder whose jobs finished (for example the one `bench/pruned_bert_sst2.py` leaves in
`bench-data/DATASET`) and, for each job's exported checkpoint and its fine-tuned teacher (pruned-bert), builds
the network from the stored weights, exports the ONNX graph as a checkpoint for an int8 profile would
(`export_checked`), scores the validation data three ways with the task's own evaluation, and times the three
with the device's threads and length, rounds alternated between the backends (medians of rounds).

    python bench/onnx_int8.py --data-dir bench-data/mrpc --out bench/results/onnx_int8_mrpc.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import onnxruntime
    import torch
    from safetensors.torch import load_file

    from latency_models.device import DeviceProfile
    from latency_models.meter import MeterSettings, make_meter
    from latency_models.onnx_runtime import OrtModule, export_checked
    from nas.db.storage import open_storage
    from nas.engine.bound_job import bind_job
    from search_spaces.arch import Arch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a hwnas data folder (HWNAS_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-models", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    storage = open_storage(f"sqlite:///{(args.data_dir / 'hwnas.db').resolve()}")
    models: list[dict] = []
    seen_teachers: set[str] = set()
    for job_record in sorted(storage.list_jobs(limit=1000, states=("completed",)), key=lambda j: j.id):
        if not storage.checkpoints(job_record.id):
            continue
        job = bind_job(storage, job_record)
        checkpoint = storage.checkpoints(job_record.id)[-1]
        trial = storage.trial_by_id(checkpoint.trial_id)
        models.append({"job": job, "name": f"job {job_record.id} trial {trial.number}", "arch": trial.arch,
                       "weights": load_file(trial.weights_path)})
        teacher = job.prepared_options.get("teacher_dir")
        if teacher and teacher not in seen_teachers:
            seen_teachers.add(teacher)
            arch = job.space.full_arch()
            models.append({"job": job, "name": "teacher", "arch": arch.to_dict(),
                           "weights": load_file(str(Path(teacher) / "teacher.safetensors"))})
    if not models:
        raise SystemExit(f"{args.data_dir}: no completed job with a checkpoint")
    results = []
    for entry in models[:args.max_models]:
        job = entry["job"]
        space, task, device = job.space, job.task, job.device
        arch = Arch.from_dict(entry["arch"])
        model = space.build(arch, seed=0)
        model.load_state_dict(entry["weights"], strict=True)
        model.eval()
        example = space.example_inputs(arch, batch_size=max(2, device.batch_size), seq_len=device.seq_len)
        with tempfile.TemporaryDirectory() as folder:
            float_path, int8_path = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
            export_checked(model, example, float_path)
            facts = export_checked(model, example, int8_path, dtype="int8")
            metrics = {"torch": task.evaluate_all(model),
                       "onnxruntime_float32": task.evaluate_all(OrtModule(float_path, config=model.config)),
                       "onnxruntime_int8": task.evaluate_all(OrtModule(int8_path, config=model.config))}
            sizes_mb = {"float32": round(float_path.stat().st_size / 2**20, 2),
                        "int8": round(int8_path.stat().st_size / 2**20, 2)}
        profiles = {"torch": DeviceProfile(name="b-torch", backend="torch-cpu", threads=args.threads,
                                           seq_len=device.seq_len, batch_size=device.batch_size),
                    "onnxruntime_float32": DeviceProfile(name="b-ort", backend="onnxruntime-cpu",
                                                         threads=args.threads, seq_len=device.seq_len,
                                                         batch_size=device.batch_size),
                    "onnxruntime_int8": DeviceProfile(name="b-int8", backend="onnxruntime-cpu", dtype="int8",
                                                      threads=args.threads, seq_len=device.seq_len,
                                                      batch_size=device.batch_size)}
        settings = MeterSettings(warmup=3, repeats=10, min_rounds=1, max_rounds=1)
        inputs = space.example_inputs(arch, batch_size=device.batch_size, seq_len=device.seq_len)
        times: dict[str, list[float]] = {name: [] for name in profiles}
        order = list(profiles)
        rng = random.Random(0)
        for _ in range(args.rounds):
            rng.shuffle(order)
            for name in order:
                sample = make_meter(profiles[name], settings).measure(model, inputs)
                times[name].append(sample.median_ms)
        medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
        row = {"model": entry["name"], "arch": entry["arch"], "metric_name": task.metric_name, "metrics": metrics,
               "latency_ms": medians, "latency_rounds_ms": times, "onnx_mb": sizes_mb,
               "int8_over_float32": round(medians["onnxruntime_int8"] / medians["onnxruntime_float32"], 3),
               "int8_over_torch": round(medians["onnxruntime_int8"] / medians["torch"], 3),
               "int8_max_abs_difference": facts["int8_max_abs_difference"]}
        print(json.dumps({k: v for k, v in row.items() if k not in ("arch", "latency_rounds_ms")}), flush=True)
        results.append(row)
    out = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.python_version()}",
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "threads": args.threads,
           "rounds": args.rounds, "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
