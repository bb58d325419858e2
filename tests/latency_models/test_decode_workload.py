"""Decode latency: a device profile can time token generation with the key-value cache (per token), for the
whole arch and for the lookup table's blocks; the predictors fit it like any other workload."""

from __future__ import annotations

import pytest
import torch

from latency_models.device import DeviceProfile
from latency_models.measure import measure_archs, measure_blocks
from latency_models.meter import MeterSettings, make_meter
from latency_models.profiler import ProfilePlan, profile
from search_spaces.base import get_space, random_archs
from search_spaces.errors import LatencyError
from tests.conftest import TINY_SPACE_OPTIONS

FAST = MeterSettings(warmup=1, repeats=2, min_rounds=1, max_rounds=2)
SPACE = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
DECODE = DeviceProfile(name="cpu-1t-decode", threads=1, seq_len=12, workload="decode", decode_tokens=6)


def test_the_decode_timer_generates_with_the_cache_and_leaves_it_as_it_found_it() -> None:
    arch = random_archs(SPACE, count=1, seed=4)[0]
    timer, inputs = SPACE.build_decode_timer(arch, batch_size=2, prompt_len=12, new_tokens=6)
    whole = torch.cat([inputs["prompt_ids"], inputs["new_ids"]], dim=1)
    with torch.no_grad():
        expected = timer.model(input_ids=whole).logits[:, -1:]
        first, second = timer(**inputs), timer(**inputs)
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-5)  # the last token's logits, via the cache
    torch.testing.assert_close(second, first, rtol=0, atol=0)  # the cache was cropped back to the prompt
    assert timer.cache.get_seq_length(0) == 12


def test_a_decode_attention_block_attends_to_its_context_and_keeps_it() -> None:
    (block,) = [b for b in SPACE.block_catalogue() if b.kind == "attention"][:1]
    module, inputs = SPACE.build_decode_block(block, batch_size=1, context_len=9)
    with torch.no_grad():
        out = module(**inputs)
        again = module(**inputs)
    assert out.shape == inputs["hidden_states"].shape and torch.equal(out, again)
    assert module.cache.get_seq_length(0) == 9


def test_decode_samples_are_per_token_and_say_so() -> None:
    meter = make_meter(DECODE, FAST)
    archs = random_archs(SPACE, count=2, seed=0)
    samples = measure_archs(SPACE, archs, meter)
    assert all(s.median_ms > 0 and s.protocol["per_token_of"] == 6 for s in samples)
    blocks = measure_blocks(SPACE, SPACE.block_catalogue()[:4], meter)
    assert all(b.median_ms > 0 and "per_token_of" not in b.protocol for b in blocks)  # a block is one token


def test_a_decode_device_is_profiled_with_both_predictors() -> None:
    outcome = profile(SPACE, DECODE, ProfilePlan(samples=12, overhead_samples=4, holdout=4, meter=FAST))
    assert [p["kind"] for p in outcome.predictors] == ["lookup-table", "learned"]
    assert all(s["sample"]["protocol"]["per_token_of"] == 6 for s in outcome.samples)


def test_an_encoder_space_is_refused_on_a_decode_device(tiny_bert_dir) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import tiny_pruned_bert_options

    bert = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir))
    with pytest.raises(LatencyError, match="not a causal language model"):
        measure_archs(bert, [bert.full_arch()], make_meter(DECODE, FAST))
    with pytest.raises(LatencyError, match="fewer decode_tokens"):
        SPACE.build_decode_timer(random_archs(SPACE, count=1, seed=0)[0], batch_size=1, prompt_len=4,
                                 new_tokens=10_000)


def test_a_job_targets_per_token_decode_latency(tmp_path, corpus_file,  # type: ignore[no-untyped-def]
                                                sqlite_url) -> None:
    """End to end on a decode profile: the device profiled for decoding, the front re-measured per token, the
    export under the per-token target."""
    from nas.db.storage import open_storage
    from nas.engine.controller import Controller
    from nas.service import submit_job
    from nas.spec import parse_spec
    from tests.conftest import fast_settings
    from tests.fakes import make_fake_evaluate
    from workers.executors.in_process import InProcessExecutor

    storage = open_storage(sqlite_url)
    storage.add_device(DECODE)
    spec = parse_spec({"space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS, "device": DECODE.name,
                       "task": {"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16},
                       "latency_target_ms": 100.0, "strategy": "random", "budget": {"trials": 4, "train_steps": 1},
                       "search": {"mode": "standalone"}})
    settings = fast_settings(data_dir=tmp_path / "data", executor="in-process", profile_samples=12,
                             profile_overhead_samples=4, profile_holdout=3)
    controller = Controller(storage, settings,
                            executor_factory=lambda: InProcessExecutor(evaluate=make_fake_evaluate([])))
    job = controller.run_job(submit_job(storage, spec))
    assert job.state == "completed", job.message
    (model,) = [m for m in storage.latency_models(device=DECODE.name, space=SPACE.name,
                                                   space_key=SPACE.latency_key()) if m.kind == "lookup-table"]
    measured = [t for t in storage.trials(job.id, states=("complete",)) if t.measured_latency_ms]
    assert measured and storage.checkpoints(job.id) and model.report["n_train"] == 4
    front = {t.id for t in measured}
    protocols = [storage.latest_sample_protocol(trial_id) for trial_id in front]
    assert protocols and all(p["per_token_of"] == 6 and p["device"] == DECODE.name for p in protocols)
