"""Engine profiles (`engine.kind`): shipped kinds, what each changes on a device profile, config and
file errors, calibrated profiles as engines, and the published rows priced with their own engine."""

from pathlib import Path

import pytest
import yaml

from servesim.build import make_cost_model
from servesim.catalog import get_hardware, get_model
from servesim.config import load_config
from servesim.core.errors import ConfigError, InputFileError
from servesim.cost import StepShape
from servesim.cost.engines import apply_engine, engine_kinds, resolve_engine
from servesim.cost.host import EngineProfile
from servesim.cost.profile import family_profile, save_profile
from servesim.cost.published import read_published
from servesim.studies.throughput import engine_default_tokens, row_profile
from tests.factories import small_config

PUBLISHED = Path(__file__).resolve().parents[2] / "data" / "measurements" / "published" / "throughput.csv"


def cost_model(kind=None, **changes):
    cfg = small_config(**{"hardware": "h200-sxm", "model": "llama3-8b", **changes})
    if kind is not None:
        cfg["engine"]["kind"] = kind
    config = load_config(cfg)
    return make_cost_model(config, get_model(config.model), get_hardware("h200-sxm"))


def test_the_issue_engines_ship_and_load():
    assert {"tensorrt-llm", "vllm", "sglang", "jetstream", "mindie"} <= set(engine_kinds())
    for kind in engine_kinds():
        engine = resolve_engine(kind)
        assert engine.description and engine.source
        engine.apply(family_profile("hopper"))


def test_jetstream_reads_its_whole_static_cache_at_every_decode():
    paged, static = cost_model(), cost_model("jetstream")
    short = StepShape([], 64, 64 * 200)  # 64 sequences at 200 tokens of an 8k static cache
    assert static.step_time(short) > 2 * paged.step_time(short)
    assert static.profile.decode_attention == "padded_cache"


def test_mindie_adds_its_serial_host_time_per_request_and_others_none():
    bare, mindie, trt = cost_model(), cost_model("mindie"), cost_model("tensorrt-llm")
    shape = StepShape([(128, 0)] * 4)
    host = resolve_engine("mindie").host.coefficient("eager.serial.chunks")
    assert host > 1e-3
    assert mindie.step_time(shape) == pytest.approx(bare.step_time(shape) + 4 * host, rel=1e-6)
    assert trt.profile.engine == EngineProfile()


def test_serving_engines_split_long_contexts_in_decode_attention():
    # The Hopper profile comes from the project's own engine, where one sequence is one block.
    one_long = StepShape([], 1, 100_000)
    assert cost_model("vllm").step_time(one_long) < cost_model().step_time(one_long)
    assert cost_model("vllm").profile.attn_decode_blocks_per_core == 0


def test_scale_multiplies_efficiencies_and_a_calibrated_profile_is_an_engine(tmp_path):
    engine_file = tmp_path / "slow.yaml"
    engine_file.write_text(yaml.safe_dump({"description": "x", "scale": {"gemm_compute_eff": 0.5}}))
    hopper = family_profile("hopper")
    slow = apply_engine(hopper, str(engine_file))
    assert slow.gemm_compute_eff == pytest.approx(hopper.gemm_compute_eff / 2)
    calibrated = tmp_path / "calibrated.yaml"
    save_profile(hopper.with_values(**{"host.eager.serial.const": 0.004}), calibrated)
    engine = resolve_engine(str(calibrated))
    assert engine.host.coefficient("eager.serial.const") == 0.004
    # the config names it relative to itself
    model = cost_model(str(calibrated))
    assert model.profile.engine.coefficient("eager.serial.const") == 0.004


def test_a_device_profiles_own_host_terms_win_over_the_engines():
    own = family_profile("hopper").with_values(**{"host.eager.serial.chunks": 0.01})
    assert resolve_engine("mindie").apply(own).engine.coefficient("eager.serial.chunks") == 0.01


@pytest.mark.parametrize("body, expected", [
    ({"scale": {"gemm_compute_eff": 0}}, "scale.gemm_compute_eff"),
    ({"scale": {"kernel_overhead_s": 2}}, "scale: unknown key 'kernel_overhead_s'"),
    ({"behaviours": {"decode_attention": "magic"}}, "behaviours.decode_attention"),
    ({"batching": {"chunked_prefill": 3}}, "batching.chunked_prefill"),
    ({"speed": 1}, "unknown key 'speed'"),
    ({"host_cpu_scale": {"grace": 0}}, "host_cpu_scale.grace"),
    ({"host_cpu_scale": {"power9": 2}}, "host_cpu_scale: unknown CPU 'power9'"),
])
def test_bad_engine_files_name_the_key(tmp_path, body, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(InputFileError, match=expected):
        resolve_engine(str(path))


def test_an_unknown_engine_kind_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="engine.kind.*unknown engine 'tgi'.*vllm"):
        cost_model("tgi")


def test_published_rows_are_priced_with_their_own_engine(tmp_path):
    rows = {r.engine: r for r in read_published(PUBLISHED)}
    used = {"tensorrt-llm", "tensorrt-llm-pytorch", "vllm", "jetstream", "mindie", "optimum-habana"}
    assert used <= set(rows)
    tpu = rows["jetstream"]
    assert row_profile(tpu, family_profile("tpu")).decode_attention == "padded_cache"
    ascend = row_profile(rows["mindie"], family_profile("ascend"))
    assert ascend.engine.coefficient("eager.serial.chunks") > 1e-3
    assert engine_default_tokens(rows["tensorrt-llm"]) == 8192
    padded = row_profile(rows["tensorrt-llm-pytorch"], family_profile("blackwell")).engine
    assert padded.graph_batch(1100) == 2048  # trtllm-bench's captured graphs, padded up
    text = PUBLISHED.read_text().splitlines()
    bad = tmp_path / "rows.csv"
    bad.write_text("\n".join([text[0], text[1].replace(",tensorrt-llm-pytorch,", ",trt,")]) + "\n")
    with pytest.raises(InputFileError, match=r"rows.csv:2: engine: expected one of .*vllm.*got 'trt'"):
        read_published(bad)


def test_engine_versions_are_fitted_on_their_own_rows_and_never_on_mlperf():
    rows = read_published(PUBLISHED)
    engine_rows = [r for r in rows if r.split == "engine"]
    assert engine_rows and {r.engine for r in engine_rows} == {
        "vllm-rocm-2024", "tensorrt-llm-pytorch", "vllm-cuda-v0", "sglang"}
    assert not any(r.id.startswith("mlperf") for r in rows if r.split != "check")
    old = resolve_engine("vllm-rocm-2024")
    assert 0 < old.scale["attn_decode_memory_eff"] < 1  # the 2024 build streams HBM slower
    cdna3 = family_profile("cdna3")
    assert old.apply(cdna3).gemm_memory_eff == pytest.approx(
        cdna3.gemm_memory_eff * old.scale["gemm_memory_eff"])


def test_vllm_on_cuda_has_its_own_profile_and_vllm_on_rocm_keeps_the_unscaled_one():
    rows = read_published(PUBLISHED)
    vendor = {r.id: get_hardware(r.device).family for r in rows}
    nvidia = {"hopper", "ampere", "blackwell"}
    on_cuda = {r.engine for r in rows if r.engine.startswith("vllm") and vendor[r.id] in nvidia}
    assert on_cuda == {"vllm-cuda-v0"}
    assert not any(r.engine == "vllm-cuda-v0" for r in rows if vendor[r.id] not in nvidia)
    cdna3, hopper = family_profile("cdna3"), family_profile("hopper")
    assert resolve_engine("vllm").apply(cdna3).attn_decode_memory_eff == cdna3.attn_decode_memory_eff
    v0 = resolve_engine("vllm-cuda-v0")
    assert v0.batching["chunked_prefill"] is False and max(v0.host.graph_batch_sizes) == 256
    assert 0 < v0.scale["attn_decode_memory_eff"] < 1
    assert v0.apply(hopper).comm_bw_eff == pytest.approx(hopper.comm_bw_eff * v0.scale["comm_bw_eff"])


def test_sglang_is_fitted_against_the_reference_engine_so_its_scale_never_compounds():
    import importlib.util

    path = PUBLISHED.parents[3] / "tools" / "fit_published.py"
    spec = importlib.util.spec_from_file_location("fit_published", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    base, family, params = tool.ENGINE_FIT["sglang"]
    reference, sglang = resolve_engine(base), resolve_engine("sglang")
    assert not reference.scale and reference.host is None and family == "hopper"
    assert reference.behaviours == sglang.behaviours and set(sglang.scale) >= set(params)


def grace_step(host_cpu=None, kind="tensorrt-llm-pytorch"):
    hardware = {"base": "gb200"} if host_cpu is None else {"base": "gb200", "host_cpu": host_cpu}
    cfg = small_config(hardware=hardware, model="qwen3-30b-a3b")
    cfg["engine"]["kind"] = kind
    config = load_config(cfg)
    model = make_cost_model(config, get_model(config.model), get_hardware(hardware))
    return model.step_time(StepShape([(512, 0)], 1024, 1024 * 700))  # a mixed (eager) step


def test_an_engines_host_time_follows_the_servers_host_cpu():
    # GB200 NVL72 runs the engine's Python on a Grace CPU, DGX B200 on x86 Xeons (catalog).
    assert get_hardware("gb200").host_cpu == "grace" and get_hardware("b200").host_cpu == "x86"
    engine = resolve_engine("tensorrt-llm-pytorch")
    factor = engine.host_cpu_scale["grace"]
    assert factor > 1
    x86 = engine.apply(family_profile("blackwell")).engine
    grace = engine.apply(family_profile("blackwell"), "grace").engine
    for term in ("graph.serial.seqs", "eager.serial.seqs"):
        assert grace.coefficient(term) == pytest.approx(factor * x86.coefficient(term))
    # through a config: the same step on the same GPU costs more on the Grace host, by the host time
    host = 1025 * x86.coefficient("eager.serial.seqs")  # 1,024 decodes and one prompt
    assert grace_step() - grace_step("x86") == pytest.approx((factor - 1) * host, rel=1e-6)
    assert grace_step(kind="tensorrt-llm") == grace_step("x86", kind="tensorrt-llm")  # no host layer


def test_an_unknown_host_cpu_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="hardware.host_cpu.*x86, grace"):
        get_hardware({"base": "gb200", "host_cpu": "power9"})


def test_the_grace_host_factor_is_fitted_on_engine_rows_only():
    # Fitted on Llama 4 Scout pairs, GB200 (Grace) against DGX B200 (x86), all split=engine; every other
    # GB200 row is held out, and no other B200 row is an engine row.
    rows = [r for r in read_published(PUBLISHED) if r.device in ("gb200", "b200")]
    engine = [r for r in rows if r.split == "engine"]
    assert {r.model for r in engine} == {"llama4-scout"}
    assert {r.engine for r in engine} == {"tensorrt-llm-pytorch"}
    assert sum(r.device == "gb200" for r in engine) == sum(r.device == "b200" for r in engine) == 9
    assert all(r.split == "check" for r in rows if r.device == "gb200" and r.model != "llama4-scout")


def test_multi_step_scheduling_shares_the_serial_host_time_of_decode_steps():
    """vLLM V0 pays its host time between steps (scheduling, inputs, output processing) once per
    scheduling: with `--num-scheduler-steps N` a decode step waits for 1/N of it, a prompt step for all."""
    v0 = resolve_engine("vllm-cuda-v0")
    per_seq = v0.host.coefficient("graph.serial.seqs")
    assert per_seq > 0 and v0.host.coefficient("eager.serial.seqs") == per_seq
    one, ten = (cost_model("vllm-cuda-v0", **{"engine.num_scheduler_steps": n}) for n in (1, 10))
    gpu = cost_model("vllm-cuda-v0").gpu_time
    decode = StepShape([], 200, 200 * 500)  # 200 decodes: a captured graph (up to 256)
    eager = StepShape([], 300, 300 * 500)  # beyond the captured sizes
    for shape in (decode, eager):
        n = shape.num_decodes
        assert one.step_time(shape) == pytest.approx(one.gpu_time(shape) + n * per_seq, rel=1e-9)
        assert ten.step_time(shape) == pytest.approx(ten.gpu_time(shape) + n * per_seq / 10, rel=1e-9)
        times = [m.decode_step_times(n, [n * 500.0])[0] for m in (one, ten)]
        assert times == pytest.approx([one.step_time(shape), ten.step_time(shape)], rel=1e-9)
    prompts = StepShape([(400, 0)] * 4, 0, 0)
    assert one.step_time(prompts) == ten.step_time(prompts) == pytest.approx(gpu(prompts) + 4 * per_seq)
    with pytest.raises(ConfigError, match="engine.num_scheduler_steps"):
        cost_model("vllm-cuda-v0", **{"engine.num_scheduler_steps": 0})


def test_the_single_step_host_time_comes_from_the_blogs_multi_step_speed_up():
    """The per-sequence term is set so that the vLLM v0.6.0 blog's 70B decode-heavy row, replayed
    with single-step scheduling, runs 1.28x slower than with its own 10 steps (the post's +28%)."""
    import importlib.util
    from dataclasses import replace

    from servesim.studies.throughput import predicted_throughput, record_trace

    path = PUBLISHED.parents[3] / "tools" / "fit_published.py"
    spec = importlib.util.spec_from_file_location("fit_published", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    row_id, steps, speedup = tool.SCHEDULER_STEPS_FIT["vllm-cuda-v0"]
    row = next(r for r in read_published(PUBLISHED) if r.id == row_id)
    assert row.split == "engine" and row.scheduler_steps == 10 and not row.is_mlperf
    trace, hopper = record_trace(row), family_profile("hopper")
    own, single = (predicted_throughput(replace(row, scheduler_steps=n), trace, hopper) for n in (10, steps))
    assert own / single == pytest.approx(speedup, rel=0.01)
    krai = [r for r in read_published(PUBLISHED) if r.engine == "vllm-cuda-v0" and r.is_mlperf]
    assert krai and all(r.scheduler_steps == 1 for r in krai)  # held out: their runs state single steps
