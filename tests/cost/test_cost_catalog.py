"""Catalog specs: every entry loads, shapes give the published parameter counts and KV sizes."""

import pytest

from servesim.catalog import get_hardware, get_model, hardware_names, model_names
from servesim.catalog.specs import hardware_by_alias
from servesim.core.errors import ConfigError

INTERFACE_HARDWARE = "a100-80gb h100-sxm h200-sxm h20 b200 l40s mi300x ascend-910b tpu-v5e tpu-v5p gaudi3"
INTERFACE_MODELS = (
    "llama2-7b llama2-13b llama2-70b llama3-8b llama3-70b llama3.1-8b llama3.1-70b llama3.1-405b "
    "mistral-7b mixtral-8x7b qwen2.5-7b qwen2.5-72b deepseek-v3"
)


def test_interface_names_exist():
    assert set(INTERFACE_HARDWARE.split()) <= set(hardware_names())
    assert set(INTERFACE_MODELS.split()) <= set(model_names())
    assert any(get_model(n).is_moe and n.startswith("qwen") for n in model_names())


@pytest.mark.parametrize("name", hardware_names())
def test_hardware_specs_are_complete(name):
    hw = get_hardware(name)
    assert hw.peak_flops("bf16") > 1e14 and hw.hbm_bytes > 1e10 and hw.hbm_bytes_per_s > 2e11
    assert hw.link_bytes_per_s > 0 and hw.link_latency_s > 0
    assert hw.peak_flops("fp8") >= hw.peak_flops("bf16")


@pytest.mark.parametrize(
    "name, billions, active",
    [
        ("llama3-8b", 8.03, None),
        ("llama3-70b", 70.6, None),
        ("llama3.1-405b", 405.9, None),
        ("llama2-7b", 6.74, None),
        ("mixtral-8x7b", 46.7, 12.9),
        ("deepseek-v3", 671.0, 37.0),
        ("qwen3-30b-a3b", 30.5, 3.1),
        ("opt-13b", 12.85, None),
        ("opt-66b", 65.7, None),
        ("opt-175b", 175.0, None),
        ("mistral-7b-v0.1", 7.24, None),
        ("yi-34b", 34.4, None),
        ("falcon-180b", 180.0, None),
        ("llama2-70b-chat", 69.0, None),
    ],
)
def test_parameter_counts_match_published(name, billions, active):
    m = get_model(name)
    assert m.num_params / 1e9 == pytest.approx(billions, rel=0.01)
    if active is not None:
        assert m.active_params_per_token / 1e9 == pytest.approx(active, rel=0.05)


def test_kv_bytes_gqa_split_and_mla_replicated():
    m = get_model("llama3-70b")  # 80 layers x 2 x 8 heads x 128 x 2 bytes
    assert m.kv_bytes_per_token(1) == 80 * 2 * 8 * 128 * 2
    assert m.kv_bytes_per_token(4) == m.kv_bytes_per_token(1) / 4
    assert m.kv_bytes_per_token(16) == m.kv_bytes_per_token(8)  # replicated past 8 KV heads
    ds = get_model("deepseek-v3")  # latent 512 + RoPE 64 per layer, not split by TP
    assert ds.kv_bytes_per_token(1) == 61 * 576 * 2 == ds.kv_bytes_per_token(8)


def test_dtypes_change_bytes():
    bf16 = get_model("llama3-8b")
    int4 = get_model({"base": "llama3-8b", "weight_dtype": "int4", "kv_dtype": "fp8"})
    assert int4.weight_bytes() < 0.4 * bf16.weight_bytes()
    assert int4.kv_bytes_per_token() == bf16.kv_bytes_per_token() / 2


def test_bad_inline_specs_name_the_key():
    with pytest.raises(ConfigError, match=r"^model\.weight_dtype"):
        get_model({"base": "llama3-8b", "weight_dtype": "fp3"})
    with pytest.raises(ConfigError, match=r"^model\.num_expert"):
        get_model({"base": "llama3-8b", "num_expert": 8})
    with pytest.raises(ConfigError, match=r"^model\.num_layers: expected an integer"):
        get_model({"base": "llama3-8b", "num_layers": "many"})
    with pytest.raises(ConfigError, match=r"^hardware\.hbm_tb_s: expected a number"):
        get_hardware({"base": "h100-sxm", "hbm_tb_s": -1})
    with pytest.raises(ConfigError, match=r"^hardware\.peak_tflops"):
        get_hardware({"base": "h100-sxm", "peak_tflops": {"bf16": "fast"}})


def test_driver_names_resolve_to_catalog():
    assert hardware_by_alias("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert hardware_by_alias("h200-sxm") == "h200-sxm"
    assert hardware_by_alias("Some GPU") is None
