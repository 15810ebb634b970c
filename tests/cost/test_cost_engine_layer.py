"""The engine layer of the cost model: host time, CUDA-graph padding, decode-attention behaviours,
profile files with an engine section, and the host fit on hand-built step logs."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.catalog import get_hardware, get_model
from servesim.core.errors import InputFileError
from servesim.cost import RooflineCostModel, StepShape
from servesim.cost.host import EngineProfile, engine_from_dict
from servesim.cost.profile import family_profile, load_profile, profile_from_dict, save_profile
from servesim.enginerun.fit import StepFeatures, host_start, identifiable, nonnegative_lstsq
from servesim.enginerun.steps import EngineSteps

POW2 = tuple(2**i for i in range(9))
HOST = {
    "graph.serial.const": 2e-4,
    "graph.enqueue.const": 3e-4,
    "eager.serial.const": 3e-4,
    "eager.serial.chunks": 1e-4,
    "eager.enqueue.const": 0.010,
    "eager.enqueue.chunks": 0.004,
    "eager.tail": 0.001,
}


def cost(mode="mean", engine=None, hw="h200-sxm", **values):
    engine = engine if engine is not None else EngineProfile()
    profile = family_profile("hopper").with_values(decode_attention=mode, engine=engine, **values)
    return RooflineCostModel(get_model("llama3-8b"), get_hardware(hw), profile=profile)


# -- host time -------------------------------------------------------------------------------------
def test_a_step_is_serial_host_plus_the_longer_of_gpu_and_launches():
    engine = EngineProfile(POW2, HOST)
    bare, cm = cost(), cost(engine=engine)
    short = StepShape([(16, 0)])  # eager, GPU far shorter than 14 ms of Python launches
    assert cm.step_time(short) == pytest.approx(3e-4 + 1e-4 + 0.010 + 0.004 + 0.001)
    long = StepShape([(4096, 0)])  # GPU-bound: the launches hide under the kernels
    assert cm.step_time(long) == pytest.approx(bare.step_time(long) + 3e-4 + 1e-4)
    decode = StepShape([], 8, 8 * 1000)  # a graph replay: GPU-bound, plus its serial host time
    assert cm.step_time(decode) == pytest.approx(bare.gpu_time(StepShape([], 8, 8000)) + 2e-4, rel=0.02)
    assert cm.breakdown(short).by_op["host_wait"] > 0.01
    assert cm.gpu_time(short) == pytest.approx(bare.step_time(short))


def test_batched_prefill_attention_pays_one_launch_for_all_chunks():
    # per chunk: three prompts launch attention three times (the host waits 10 + 3 x 4 ms);
    # batched: one varlen/paged call for all three costs what one chunk does
    per_chunk = cost(engine=EngineProfile(POW2, HOST))
    batched = cost(engine=EngineProfile(POW2, HOST, prefill_attention="batched"))
    three, one = StepShape([(16, 0), (16, 0), (16, 0)], 4, 4000), StepShape([(48, 0)], 4, 4000)
    assert per_chunk.step_time(three) == pytest.approx(3e-4 + 3e-4 + 0.010 + 3 * 0.004 + 0.001)
    assert batched.step_time(three) == pytest.approx(3e-4 + 1e-4 + 0.010 + 0.004 + 0.001)
    assert batched.step_time(one) == per_chunk.step_time(one)  # one chunk: the same call
    # on the GPU the batched kernel is one launch per layer too: 2 x 32 fewer kernel overheads
    saved = per_chunk.gpu_time(three) - batched.gpu_time(three)
    assert saved == pytest.approx(2 * 32 * per_chunk.profile.kernel_overhead_s)
    assert EngineProfile(prefill_attention="batched").attention_calls(0) == 0  # decode steps


def test_a_whole_prompt_calibration_runs_chunked_batching_batched(tmp_path):
    """A profile fitted on whole-prompt steps (per-prompt attention) priced under chunked batching
    uses the chunked path's one call per step, unless the config says otherwise; the shipped
    profile (no engine layer) and whole-prompt batching keep per-chunk calls."""
    from servesim.build import make_cost_model
    from servesim.config import load_config

    path = tmp_path / "p.yaml"
    save_profile(family_profile("hopper").with_values(engine=EngineProfile(POW2, HOST)), path, "h")
    base = {"model": "llama3-8b", "hardware": "h200-sxm", "cost": {"profile": str(path)}}
    model, hw = get_model("llama3-8b"), get_hardware("h200-sxm")

    def attention(config: dict, **over) -> str:
        return make_cost_model(load_config(config, over), model, hw).profile.engine.prefill_attention

    assert attention(base) == "per_chunk"
    assert attention(base, **{"engine.scheduler": "chunked_prefill"}) == "batched"
    assert attention(base, **{"engine.scheduler": "srtf", "engine.batching": "chunked"}) == "batched"
    assert attention(base, **{"engine.scheduler": "chunked_prefill", "cost.prefill_attention": "per_chunk"}) \
        == "per_chunk"
    shipped = {"model": "llama3-8b", "hardware": "h200-sxm", "engine": {"scheduler": "chunked_prefill"}}
    assert attention(shipped) == "per_chunk"


def test_the_config_states_the_engines_prefill_attention_over_the_profiles(tmp_path):
    from servesim.build import make_cost_model
    from servesim.config import load_config

    path = tmp_path / "p.yaml"
    save_profile(family_profile("hopper").with_values(engine=EngineProfile(POW2, HOST)), path, "h")
    base = {"model": "llama3-8b", "hardware": "h200-sxm", "cost": {"profile": str(path)}}
    model, hw = get_model("llama3-8b"), get_hardware("h200-sxm")
    three = StepShape([(16, 0), (16, 0), (16, 0)], 4, 4000)
    plain = make_cost_model(load_config(base), model, hw)
    batched = make_cost_model(load_config(base, {"cost.prefill_attention": "batched"}), model, hw)
    assert plain.profile.engine.prefill_attention == "per_chunk"
    assert batched.profile.engine.prefill_attention == "batched"
    assert plain.step_time(three) - batched.step_time(three) == pytest.approx(2 * 0.004, rel=0.05)


def test_a_batched_runs_host_fit_counts_one_attention_call_per_step():
    # the same steps, logged by an engine with one paged-prefill call per step: the chunks column
    # of the fit is 1 for every step with chunks, so the launch cost lands on it, not per chunk
    shapes = [StepShape([(64, 0)] * k, 0, 0) for k in (1, 2, 3, 1, 2, 3)]
    log = EngineSteps(
        Path("synthetic"), np.arange(6) + 2, np.arange(6) * 0.1, np.arange(6) * 0.1 + 0.02,
        np.array(["prefill"] * 6), shapes, np.full(6, 0.019), np.full(6, 0.012), np.zeros(6),
    )
    for attention, calls in (("per_chunk", [1, 2, 3]), ("batched", [1, 1, 1])):
        features = StepFeatures(log, np.arange(6), EngineProfile(prefill_attention=attention))
        assert features.chunks.tolist() == calls * 2
    host, _ = host_start(StepFeatures(log, np.arange(6), EngineProfile(prefill_attention="batched")))
    assert host.get("eager.enqueue.const", 0) + host.get("eager.enqueue.chunks", 0) == pytest.approx(0.012)


def test_graph_batches_pad_decode_steps_and_beyond_them_steps_are_eager():
    engine = EngineProfile((1, 2, 4, 8), {"graph.enqueue.const": 1e-4, "eager.enqueue.const": 0.02})
    cm, bare = cost(engine=engine), cost()
    assert engine.graph_batch(3) == 4 and engine.graph_batch(9) == 0
    # 3 decodes compute as 4 rows (GEMMs and LM head on the padded batch)
    padded, exact = cm.gpu_time(StepShape([], 3, 300)), bare.gpu_time(StepShape([], 3, 300))
    assert padded > exact
    # (attention still sees 3 sequences: padded rows have no context)
    assert padded == pytest.approx(bare.gpu_time(StepShape([], 4, 300, 4)), rel=5e-3)
    # 9 decodes: no graph, so eager launches bound the step
    assert cm.step_time(StepShape([], 9, 900)) >= 0.02


def test_engine_section_round_trips_through_a_profile_file(tmp_path):
    profile = family_profile("hopper").with_values(
        decode_attention="split_kv", engine=EngineProfile(POW2, HOST, prefill_attention="batched")
    )
    path = tmp_path / "p.yaml"
    save_profile(profile, path, "header")
    again = load_profile(path)
    assert again == profile
    assert again.value("host.eager.enqueue.chunks") == 0.004
    assert again.with_values(**{"host.eager.tail": 0.5}).engine.coefficient("eager.tail") == 0.5


@pytest.mark.parametrize(
    "section,message",
    [
        ({"graph_batch_sizes": [1, 0]}, "engine.graph_batch_sizes: expected a list of positive integers"),
        ({"host": {"eager.enqueue.sequences": 1}}, "engine.host: unknown coefficient"),
        ({"host": {"eager.tail": -1}}, "engine.host.eager.tail: expected a number >= 0"),
        ({"cuda_graphs": True}, "engine: unknown key 'cuda_graphs'"),
        ({"prefill_attention": "varlen"}, "engine.prefill_attention: expected one of per_chunk, batched"),
    ],
)
def test_bad_engine_sections_name_the_key(section, message):
    with pytest.raises(InputFileError, match=message):
        engine_from_dict(section, "p.yaml")


def test_bad_decode_attention_names_the_key():
    with pytest.raises(InputFileError, match="decode_attention: expected one of mean, max_context"):
        profile_from_dict({"parameters": {"decode_attention": "paged"}}, "p.yaml")


# -- decode attention ------------------------------------------------------------------------------
def test_without_kv_splitting_the_longest_sequence_bounds_the_step():
    even = StepShape([], 4, 4 * 2000, max_decode_ctx=2000)
    skewed = StepShape([], 4, 8000, max_decode_ctx=7000)
    mean, longest = cost("mean"), cost("max_context")
    assert mean.step_time(even) == mean.step_time(skewed)  # only the sum matters
    assert longest.step_time(skewed) > 2 * longest.step_time(even) - mean.step_time(even)
    assert longest.step_time(skewed) > mean.step_time(skewed)


def test_split_kv_follows_the_engine_rule_and_helps_small_batches():
    cm = cost("split_kv")
    # mini_engine: splits = largest power of two <= 256 / (8 KV heads x batch), at most 16
    for batch in (1, 2, 3, 4, 5, 8, 16, 31, 32, 64, 256):
        s = 256 // (8 * batch)
        expected = 1 if s <= 1 else min(16, 1 << (s.bit_length() - 1))
        assert cm._splits(batch) == expected
    one = StepShape([], 1, 8000, max_decode_ctx=8000)
    assert cm.step_time(one) < cost("max_context").step_time(one)
    many = StepShape([], 64, 64 * 500, max_decode_ctx=4000)
    assert cm.step_time(many) == pytest.approx(cost("max_context").step_time(many), rel=1e-9)


def test_batch_kv_scores_every_query_against_every_kv_token_of_the_batch():
    cm = cost("batch_kv")
    lone = cm.gpu_time(StepShape([(2048, 0)]))
    beside_long = cm.gpu_time(StepShape([(2048, 0)], 8, 8 * 8000))
    per_chunk = cost("mean").gpu_time(StepShape([(2048, 0)], 8, 8 * 8000))
    # the prompt's 2048 queries are scored against the decodes' 64k cached tokens too
    assert beside_long - lone > 2 * (per_chunk - cost("mean").gpu_time(StepShape([(2048, 0)])))


@settings(max_examples=40, deadline=None)
@given(
    mode=st.sampled_from(["mean", "max_context", "split_kv", "batch_kv"]),
    n=st.integers(1, 300),
    ctx=st.lists(st.integers(0, 8000), min_size=1, max_size=6),
    extra=st.integers(0, 3000),
    graphs=st.booleans(),
)
def test_decode_step_times_equal_step_time(mode, n, ctx, extra, graphs):
    engine = EngineProfile(POW2 if graphs else (), HOST)
    cm = cost(mode, engine)
    sums = np.array([c * n for c in ctx], dtype=np.float64)
    longest = np.array([c + extra for c in ctx], dtype=np.float64)
    vec = cm.decode_step_times(n, sums, longest)
    for s, m, v in zip(sums, longest, vec):
        assert cm.step_time(StepShape([], n, int(s), max_decode_ctx=int(m))) == v


# -- the host fit ----------------------------------------------------------------------------------
def synthetic_log(n: int = 400, seed: int = 0) -> EngineSteps:
    """Decode (graph) and prefill (eager) steps whose timings follow HOST exactly, GPU from the
    roofline."""
    rng = np.random.default_rng(seed)
    engine = EngineProfile(POW2, HOST)
    cm = cost(engine=engine)
    shapes = []
    for i in range(n):
        if i % 4 == 0:
            shapes.append(StepShape([(int(rng.integers(8, 3000)), 0) for _ in range(rng.integers(1, 3))]))
        else:
            b = int(rng.integers(1, 64))
            shapes.append(StepShape([], b, b * int(rng.integers(10, 3000))))
    wall, gpu, enq, start, t = [], [], [], [], 0.0
    for s in shapes:
        graph = not s.prefill_chunks
        mode = "graph" if graph else "eager"
        chunks = len(s.prefill_chunks)
        content = (chunks + s.num_decodes, chunks, s.num_tokens, s.kv_tokens)
        serial, enqueue, tail = engine.host_times(mode, *content)
        device = max(cm.gpu_time(s), enqueue + tail)
        start.append(t)
        gpu.append(device)
        enq.append(enqueue)
        wall.append(serial + device - 5e-5)
        t += serial + device  # 50 us of the serial time after the step: the loop's gap
    start = np.array(start)
    kinds = np.array(["decode" if not s.prefill_chunks else "prefill" for s in shapes])
    bucket = np.array([engine.graph_batch(s.num_decodes) if not s.prefill_chunks else 0 for s in shapes])
    return EngineSteps(
        Path("synthetic"), np.arange(n) + 2, start, start + np.array(wall), kinds, shapes,
        np.array(gpu), np.array(enq), bucket,
    )


def test_host_terms_are_recovered_from_the_timing_columns():
    log = synthetic_log()
    features = StepFeatures(log, np.arange(len(log)), EngineProfile(POW2))
    host, refine = host_start(features)
    for name, value in HOST.items():
        assert host[name] == pytest.approx(value, rel=0.02, abs=2e-6), name
    assert refine == ["graph.tail", "eager.tail"]
    assert all(host.get(k, 0) < 1e-6 for k in ("eager.enqueue.seqs", "graph.serial.seqs"))


def test_equal_feature_columns_go_to_the_preferred_one():
    # every eager step of an FCFS run has as many sequences as chunks: the cost is put on chunks
    x = np.column_stack([np.ones(5), [1, 2, 1, 3, 2], [1, 2, 1, 3, 2], [10, 50, 7, 90, 33], np.zeros(5)])
    cols = identifiable(x)
    assert cols == [0, 2, 3]  # const, chunks, tokens: seqs duplicates chunks, kv_tokens is all zero
    coef = nonnegative_lstsq(x[:, cols], 0.01 + 0.004 * x[:, 2])
    assert coef == pytest.approx([0.01, 0.004, 0.0], abs=1e-9)


def test_an_engine_kind_keeps_a_calibrated_profiles_prefill_attention():
    from servesim.cost.engines import EngineKind

    host = EngineProfile(POW2, {"eager.enqueue.const": 0.01}, prefill_attention="batched")
    kind = EngineKind("k", host=host)
    calibrated = family_profile("hopper").with_values(engine=EngineProfile(POW2, HOST))  # per_chunk, fitted
    assert kind.apply(calibrated).engine.prefill_attention == "per_chunk"
    assert kind.apply(family_profile("hopper")).engine.prefill_attention == "batched"  # no host layer
