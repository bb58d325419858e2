"""The exported checkpoint loads with plain transformers in a Python that cannot import hwnas."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from nas.db.storage import open_storage
from nas.service import export_job_trial
from nas.engine.controller import Controller
from nas.service import submit_job
from tests.fakes import feature_sum_factory, make_fake_evaluate
from tests.nas.engine.test_controller import make_spec, run
from workers.executors.in_process import InProcessExecutor

CLEAN_LOAD = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("nas", "search_spaces", "workers", "latency_models"):
            raise ImportError(f"hwnas package {name} must not be needed")
sys.meta_path.insert(0, Block())
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, ids_path, out_path = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
ids = torch.tensor(json.load(open(ids_path)))
with torch.no_grad():
    torch.save(model(input_ids=ids).logits, out_path)
print("RESULT " + json.dumps({"class": type(model).__name__, "tokens": tokenizer("hi", add_special_tokens=False)["input_ids"]}))
"""


CLEAN_GENERATE = CLEAN_LOAD.split("import torch\n", 1)[0] + r"""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
import builtins
folder, out_path = sys.argv[1:3]
questions = []
def ask(prompt=""):  # what a terminal would show; answered as nobody there would
    questions.append(prompt)
    raise EOFError
builtins.input = ask
result = {"plain_tokenizer_ids": AutoTokenizer.from_pretrained(folder)("def f(x):")["input_ids"],
          "asked_for_the_tokenizer": list(questions)}
try:
    result["untrusted_model"] = type(AutoModelForCausalLM.from_pretrained(folder)).__name__
except ValueError as error:
    result["untrusted_model"] = "refused" if "trust_remote_code=True" in str(error) else str(error)
result["asked_for_the_model"] = len(questions) > len(result["asked_for_the_tokenizer"])
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
prompts = ["def f(x):", "import o"]
encoded = tokenizer(prompts, padding=True, return_tensors="pt", padding_side="left")
result["prompt_ids"] = tokenizer("def f(x):")["input_ids"]
for name, options in {"greedy": {}, "beam": {"num_beams": 3}, "sample": {"do_sample": True, "top_k": 20}}.items():
    for cached in (True, False):
        torch.manual_seed(0)
        out = model.generate(**encoded, max_new_tokens=12, use_cache=cached, pad_token_id=0, **options)
        result[f"{name}-{cached}"] = out.tolist()
with torch.no_grad():  # a cached step's logits are the whole prefix's
    ids = tokenizer("def f(x): return x", return_tensors="pt")["input_ids"]
    full = model(input_ids=ids).logits
    first = model(input_ids=ids[:, :-3], use_cache=True)
    steps, cache = [first.logits], first.cache if hasattr(first, "cache") else first.past_key_values
    for t in range(ids.shape[1] - 3, ids.shape[1]):
        step = model(input_ids=ids[:, t:t + 1], cache=cache, use_cache=True)
        steps.append(step.logits)
    result["cache_max_diff"] = float((torch.cat(steps, 1) - full).abs().max())
generator = pipeline("text-generation", model=folder, trust_remote_code=True)
result["pipeline"] = generator("def f(x):", max_new_tokens=8, do_sample=False)[0]["generated_text"]
json.dump(result, open(out_path, "w"))
"""


def test_export_loads_in_clean_python_with_equal_logits(tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=100.0, budget={"trials": 3}), [])
    (checkpoint,) = storage.checkpoints(job_id)
    folder = Path(checkpoint.path)
    assert {"config.json", "model.safetensors", "modeling_hwnas_sparse.py", "README.md",
            "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    card = (folder / "README.md").read_text()
    assert "bits_per_char" in card and "measured latency" in card and '"d_model"' in card

    import hashlib

    assert hashlib.sha256(Path(checkpoint.archive_path).read_bytes()).hexdigest() == checkpoint.sha256
    with tarfile.open(checkpoint.archive_path) as tar:
        assert f"{folder.name}/model.safetensors" in tar.getnames()

    # Reference logits from the project's own model with the trial's weights.
    from safetensors.torch import load_file

    from search_spaces.arch import Arch
    from search_spaces.base import get_space
    from tests.conftest import TINY_SPACE_OPTIONS

    trial_number = int(folder.name.rsplit("-", 1)[1])
    trial = storage.trial(job_id, trial_number)
    space = get_space("sparse-transformer", {**TINY_SPACE_OPTIONS, "vocab_size": 259})
    model = space.build(Arch.from_dict(trial.arch))
    model.load_state_dict(load_file(trial.weights_path))
    ids = [[5, 80, 120, 3, 200, 7, 9, 11], [100, 101, 102, 103, 104, 105, 106, 107]]
    with torch.no_grad():
        expected = model.eval()(input_ids=torch.tensor(ids)).logits
    (tmp_path / "ids.json").write_text(json.dumps(ids))
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_LOAD, str(folder), str(tmp_path / "ids.json"),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    info = json.loads(line.removeprefix("RESULT "))
    assert info == {"class": "HwnasSparseForCausalLM", "tokens": [ord("h") + 3, ord("i") + 3]}
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, rtol=0, atol=0)

    # Generation in plain transformers: generate() with and without the key-value cache, the pipeline, and a
    # tokenizer that adds nothing to a prompt and loads without asking about remote code.
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_GENERATE, str(folder), str(tmp_path / "gen.json")],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    generated = json.loads((tmp_path / "gen.json").read_text())
    assert generated["prompt_ids"] == [b + 3 for b in b"def f(x):"]  # bytes, no end-of-sequence token
    # Without trust_remote_code: the tokenizer loads without a question; the model is refused, not guessed.
    assert generated["asked_for_the_tokenizer"] == []
    assert generated["plain_tokenizer_ids"] == generated["prompt_ids"]
    assert generated["untrusted_model"] == "refused" and generated["asked_for_the_model"]
    for name in ("greedy", "beam", "sample"):
        assert generated[f"{name}-True"] == generated[f"{name}-False"], name
        assert all(len(row) == len(generated["greedy-True"][0]) for row in generated[f"{name}-True"])
    assert generated["cache_max_diff"] < 1e-4
    assert generated["pipeline"].startswith("def f(x):") and len(generated["pipeline"]) > len("def f(x):")


def test_archive_is_reproducible_and_export_picks_best(tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=100.0, budget={"trials": 3}), [])
    first = export_job_trial(storage, job_id, trial_number=None, out_dir=tmp_path / "a" / "ckpt")
    second = export_job_trial(storage, job_id, trial_number=None, out_dir=tmp_path / "b" / "ckpt")
    assert first.sha256 == second.sha256
    assert first.trial == int(Path(storage.checkpoints(job_id)[0].path).name.rsplit("-", 1)[1])


def _export_on_device(storage, tmp_path: Path, corpus_file: Path, *,  # type: ignore[no-untyped-def]
                      device, trials: int):
    """A job on `device` (stored first) run to its end with untrained weights, measured there for real; the job
    and its one checkpoint's folder."""
    from tests.conftest import fast_settings
    from workers.device_tasks import DeviceRunner

    storage.add_device(device)
    spec = make_spec(corpus_file, device=device.name, latency_target_ms=100.0,
                     budget={"trials": trials, "train_steps": 1})
    controller = Controller(storage, fast_settings(data_dir=tmp_path / "data", executor="in-process"),
                            executor_factory=lambda: InProcessExecutor(evaluate=make_fake_evaluate([])),
                            latency_model_factory=feature_sum_factory, device_runner=DeviceRunner(use_ray=False))
    job = controller.run_job(submit_job(storage, spec))
    assert job.state == "completed", job.message
    (checkpoint,) = storage.checkpoints(job.id)
    return job, Path(checkpoint.path)


def test_a_job_on_an_onnx_runtime_device_exports_a_checked_onnx_graph(tmp_path: Path, corpus_file: Path,
                                                                     sqlite_url: str) -> None:
    """End to end on `onnxruntime-cpu`: the front measured with ONNX Runtime, and the checkpoint carries
    `model.onnx`, checked against the torch model, with ONNX Runtime's version in its card."""
    import numpy as np
    import onnxruntime

    from latency_models.device import DeviceProfile

    storage = open_storage(sqlite_url)
    job, folder = _export_on_device(storage, tmp_path, corpus_file, trials=3, device=DeviceProfile(
        name="ort-1t", backend="onnxruntime-cpu", threads=1, seq_len=16))
    trial = storage.trial(job.id, int(folder.name.rsplit("-", 1)[1]))
    assert storage.latest_sample_protocol(trial.id)["backend"] == "onnxruntime-cpu"
    card = (folder / "README.md").read_text()
    assert f"ONNX Runtime {onnxruntime.__version__}" in card and "model.onnx" in card
    info = json.loads((folder / "hwnas.json").read_text())["onnx"]
    assert info["max_abs_difference"] <= info["tolerance"]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True).eval()
    ids = torch.randint(0, 259, (3, 11), generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    with torch.no_grad():
        expected = model(input_ids=ids).logits.numpy()
    assert np.abs(session.run(None, {"input_ids": ids.numpy()})[0] - expected).max() < 1e-4


def test_an_int8_onnx_runtime_device_exports_the_quantised_graph_with_its_metric(
        tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    """dtype int8: the checkpoint's model.onnx is the quantised graph it was timed as, and the card and
    hwnas.json give the task's metric on the validation data with it, beside the float32 one."""
    import onnx
    import onnxruntime

    from latency_models.device import DeviceProfile

    storage = open_storage(sqlite_url)
    _, folder = _export_on_device(storage, tmp_path, corpus_file, trials=2, device=DeviceProfile(
        name="ort-int8", backend="onnxruntime-cpu", threads=1, seq_len=16, dtype="int8"))
    info = json.loads((folder / "hwnas.json").read_text())["onnx"]
    assert info["dtype"] == "int8" and "dynamic int8" in info["quantization"]
    assert set(info["quantized_metrics"]) >= {"bits_per_char"} and info["quantized_metrics"]["bits_per_char"] > 0
    assert "Quantised" in (folder / "README.md").read_text()
    graph = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops, ops  # the int8 graph, not the float one
    ids = torch.randint(0, 259, (2, 9), generator=torch.Generator().manual_seed(0))
    assert graph.run(None, {"input_ids": ids.numpy()})[0].shape[:2] == (2, 9)
