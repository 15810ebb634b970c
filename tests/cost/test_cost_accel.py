"""Accelerators beyond the calibration GPU: link latency in collectives, the datatype rate table,
padded-cache attention, and replaying published throughput rows (issue 18)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from servesim.catalog import get_hardware, get_model
from servesim.core.errors import InputFileError
from servesim.cost import RooflineCostModel, StepShape
from servesim.cost.datatypes import rate_dtype, tensor_flops
from servesim.cost.microbench import all_reduce_seconds
from servesim.cost.profile import family_profile, load_profile, profile_from_dict

H100 = get_hardware("h100-sxm")


def comm_seconds(hw, tp=4, tokens=1):
    cm = RooflineCostModel(get_model("llama3-70b"), hw, tp=tp)
    return cm.breakdown(StepShape([], tokens, 1000 * tokens)).by_op["comm"]


def test_link_latency_changes_tp_allreduce_cost_as_the_catalog_says():
    slow = replace(H100, link_latency_s=H100.link_latency_s + 3e-6)
    layers, tp = get_model("llama3-70b").num_layers, 4
    # Two all-reduces per layer, each 2 (tp - 1) ring hops, plus one logit gather of tp - 1 hops.
    hops = 2 * layers * 2 * (tp - 1) + (tp - 1)
    assert comm_seconds(slow, tp) - comm_seconds(H100, tp) == pytest.approx(hops * 3e-6, rel=1e-9)
    # The all-reduce micro-benchmark model prices the very same latency.
    profile = family_profile("hopper")
    diff = all_reduce_seconds(slow, profile, 1024, tp) - all_reduce_seconds(H100, profile, 1024, tp)
    assert diff == pytest.approx(2 * (tp - 1) * 3e-6, rel=1e-9)


def test_a_full_mesh_gives_a_tp_group_only_its_peers_links():
    gaudi2 = get_hardware("gaudi2")
    assert gaudi2.link_peers == 7 and get_hardware("h100-sxm").link_peers == 0
    switched = replace(gaudi2, link_peers=0, link_latency_s=0.0)
    mesh = replace(gaudi2, link_latency_s=0.0)
    profile = family_profile("gaudi2").with_values(comm_latency_s=1e-12)
    big = 64 * 2**20  # bandwidth-bound: the time is bytes over the group's links
    for tp in (2, 4, 8):
        ratio = all_reduce_seconds(mesh, profile, big, tp) / all_reduce_seconds(switched, profile, big, tp)
        assert ratio == pytest.approx(7 / (tp - 1), rel=1e-6)
    # the roofline prices the same split: TP2 on the mesh pays 7x the bandwidth term (plus the same latency)
    on_mesh, on_switch = (comm_seconds(hw, tp=2, tokens=512) for hw in (mesh, switched))
    assert on_mesh > 4 * on_switch


def test_link_latency_does_not_touch_single_gpu_steps():
    slow = replace(H100, link_latency_s=1e-3)
    shape = StepShape([(512, 0)], 8, 8000)
    a = RooflineCostModel(get_model("llama3-8b"), H100).step_time(shape)
    b = RooflineCostModel(get_model("llama3-8b"), slow).step_time(shape)
    assert a == b


@pytest.mark.parametrize(
    "device, dtype, runs_at",
    [
        ("h100-sxm", "fp4", "fp8"),  # no FP4 tensor cores: W4A8
        ("h100-sxm", "nvfp4", "fp8"),
        ("b200", "nvfp4", "fp4"),
        ("mi355x", "mxfp4", "mxfp4"),
        ("gaudi3", "fp8", "fp8"),
        ("tpu-v5e", "fp8", "bf16"),  # no FP8 on TPU v5e
        ("tpu-v5e", "int8", "int8"),
        ("ascend-910b", "int8", "int8"),
        ("a100-80gb", "fp8", "bf16"),
        ("h100-sxm", "int4", "int8"),
    ],
)
def test_datatype_rate_table(device, dtype, runs_at):
    hw = get_hardware(device)
    assert rate_dtype(hw, dtype) == runs_at
    assert tensor_flops(hw, dtype) == hw.peak_tflops[runs_at] * 1e12


def test_fp8_at_the_bf16_rate_where_the_vendor_says_so():
    gaudi3, gaudi2 = get_hardware("gaudi3"), get_hardware("gaudi2")
    assert tensor_flops(gaudi3, "fp8") == tensor_flops(gaudi3, "bf16")
    assert tensor_flops(gaudi2, "fp8") == pytest.approx(2 * tensor_flops(gaudi2, "bf16"), rel=0.01)


def test_fp4_prefill_is_faster_than_fp8_on_blackwell_only():
    def prefill(hw, dtype):
        spec = get_model({"base": "llama3-70b", "weight_dtype": dtype, "act_dtype": dtype})
        return RooflineCostModel(spec, hw).step_time(StepShape([(8192, 0)]))

    b200, h100 = get_hardware("b200"), H100
    assert prefill(b200, "nvfp4") < 0.7 * prefill(b200, "fp8")
    assert prefill(h100, "nvfp4") == pytest.approx(prefill(h100, "fp8"), rel=0.05)


def padded(tokens):
    return family_profile("hopper").with_values(decode_attention="padded_cache", decode_padded_tokens=tokens)


def test_padded_cache_reads_the_whole_cache_whatever_the_context():
    m = get_model("llama3-8b")
    cm = RooflineCostModel(m, H100, profile=padded(2048))
    short, long = cm.step_time(StepShape([], 32, 32 * 100)), cm.step_time(StepShape([], 32, 32 * 2000))
    assert short == long
    mean = RooflineCostModel(m, H100)
    assert short == pytest.approx(mean.step_time(StepShape([], 32, 32 * 2048)), rel=1e-12)
    # the vectorised decode path agrees, and the breakdown adds up
    ctx = np.array([3200.0, 5000.0])
    assert np.allclose(cm.decode_step_times(32, ctx), short)
    assert cm.breakdown(StepShape([], 32, 3200)).total_s == pytest.approx(short, rel=1e-12)
    # without a length, the model's max context is the cache
    full = RooflineCostModel(m, H100, profile=padded(0))
    assert full.step_time(StepShape([], 4, 40)) == pytest.approx(
        mean.step_time(StepShape([], 4, 4 * m.max_context)), rel=1e-12
    )


def test_profile_decode_attention_is_validated(tmp_path):
    assert profile_from_dict({"decode_attention": "padded_cache"}).decode_attention == "padded_cache"
    with pytest.raises(InputFileError, match="decode_attention: expected one of mean, .*padded_cache"):
        profile_from_dict({"decode_attention": "sometimes"})
    p = tmp_path / "p.yaml"
    p.write_text("parameters: {decode_attention: 3}\n")
    with pytest.raises(InputFileError):
        load_profile(p)


@pytest.mark.parametrize("family", ["blackwell", "cdna3", "gaudi", "gaudi2", "tpu", "ascend"])
def test_every_accelerator_family_has_a_cited_profile_fitted_without_mlperf(family):
    from servesim.cost.profile import PROFILE_DIR
    from servesim.cost.published import read_published

    text = (PROFILE_DIR / f"{family}.yaml").read_text()
    fitted_line = next(line for line in text.splitlines() if "published end-to-end rows on" in line)
    ids = fitted_line.split(": ", 1)[1].split(", ")
    published = Path(__file__).resolve().parents[2] / "data" / "measurements" / "published"
    rows = {r.id: r for r in read_published(published / "throughput.csv")}
    assert ids and all(rows[i].split == "fit" and not i.startswith("mlperf") for i in ids)
    sources = text.split("sources of the fitted rows:")[1]
    assert {rows[i].source for i in ids} <= {s.strip("# \n") for s in sources.splitlines() if s.strip("# ")}
    assert family_profile(family).source.startswith(family)
