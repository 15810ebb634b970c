"""Published throughput rows: the strict CSV, replaying a row, calibrate/check end to end."""

import json

import pytest

from servesim.cli import main
from servesim.core.errors import InputFileError
from servesim.cost.profile import family_profile, load_profile
from servesim.cost.published import read_published, trtllm_bench_settings
from servesim.studies.throughput import predicted_throughput, record_trace

HEADER = (
    "id,device,model,weight_dtype,act_dtype,kv_dtype,tp,instances,batch,max_tokens,mode,input_len,"
    "output_len,num_requests,metric,tokens_per_s,split,source\n"
)
ROWS = [
    "a,h100-sxm,llama3-8b,bf16,bf16,bf16,1,1,32,2048,continuous,256,64,96,output,2500,fit,https://x/a",
    "b,h100-sxm,llama3-8b,bf16,bf16,bf16,1,2,16,,continuous,512,32,64,total,30000,check,"
    "https://x/inference_results_v5.0/b",
    "c,h100-sxm,llama3-8b,fp8,fp8,fp8,2,1,8,,static,128,16,8,output,900,fit,https://x/c",
]


def write(tmp_path, rows, header=HEADER, name="t.csv"):
    p = tmp_path / name
    p.write_text(header + "\n".join(rows) + "\n")
    return str(p)


def test_reads_rows(tmp_path):
    rows = read_published(write(tmp_path, ROWS))
    assert [r.id for r in rows] == ["a", "b", "c"]
    assert rows[0].line == 2 and rows[2].line == 4
    assert rows[1].pp == 1 and rows[1].max_tokens is None and rows[1].memory_fraction == 0.9
    assert rows[2].spec.act_dtype == "fp8" and rows[2].gpus == 2


GOOD = "a,h100-sxm,llama3-8b,bf16,bf16,bf16,1,1,32,,continuous,256,64,96,output,1,fit,s"


@pytest.mark.parametrize(
    "change, message",
    [
        ({6: "x"}, "tp: expected an integer"),
        ({1: "h99"}, "device: expected one of"),
        ({10: "sometimes"}, "mode: expected one"),
        ({11: ""}, "input_len and output_len"),
        ({15: "-3"}, "tokens_per_s"),
        ({6: "3"}, "tp: 3 does not"),
        ({2: "llama3-70b"}, "do not fit"),
        ({8: "trtllm-bench", 10: "static"}, "static"),
        ({16: "maybe"}, "split"),
        ({17: None}, "number of fields"),
    ],
)
def test_a_bad_row_names_its_line(tmp_path, capsys, change, message):
    fields = GOOD.split(",")
    for index, value in change.items():
        fields[index] = value
    bad = ",".join(f for f in fields if f is not None)
    path = write(tmp_path, [ROWS[0].replace("a,", "z,", 1), bad])
    with pytest.raises(InputFileError, match=message) as err:
        read_published(path)
    assert err.value.line == 3
    assert main(["costmodel", "check", "--throughput", path]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and ":3:" in lines[0] and message.split(":")[0] in lines[0]


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="missing column"):
        read_published(write(tmp_path, ROWS, header=HEADER.replace("tokens_per_s,", "")))
    with pytest.raises(InputFileError, match="unknown column"):
        read_published(write(tmp_path, [r + ",x" for r in ROWS], header=HEADER.strip() + ",colour\n"))
    with pytest.raises(InputFileError, match="already used on line 2"):
        read_published(write(tmp_path, ROWS + [ROWS[0]]))
    with pytest.raises(InputFileError, match="no such file"):
        read_published(write(tmp_path, [ROWS[0].replace(",256,64,", ",,,") + ",x.csv"],
                             header=HEADER.strip() + ",lengths\n"))


def test_trtllm_bench_rule_rounds_as_the_tool_does(tmp_path):
    row = read_published(write(tmp_path, ROWS))[0]
    spec = row.spec
    kv = 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim * 2  # bf16 KV bytes per token
    raw = (80 * 2**30 - spec.num_params * 2) * 0.9 / (kv * (256 + 64))
    assert 1280 < raw < 1536  # requests that fit: rounded up to a multiple of 256
    # tokens: raw x (1 + 256/64) = 7493, between 4096 and 8192: rounded up to a multiple of 512
    assert trtllm_bench_settings(row, 256, 64) == (1536, 7680)
    assert trtllm_bench_settings(row, 4000, 4000)[0] == 64  # few requests fit: the floor of 64


def test_replayed_trace_prices_exactly_as_the_simulation_ran(tmp_path):
    """Steps do not depend on durations when every request arrives at once: re-pricing the recorded
    steps with the profile the simulation used gives back its own throughput."""
    import numpy as np

    from servesim.simulation import simulate
    from servesim.studies.throughput import engine_limits, row_config, row_lengths
    from servesim.workload import RequestTable

    for row in read_published(write(tmp_path, ROWS)):
        trace = record_trace(row)
        predicted = predicted_throughput(row, trace, family_profile("hopper"))
        prompts, outputs = row_lengths(row)
        batch, tokens = engine_limits(row, prompts, outputs)
        share = np.arange(len(prompts)) % row.instances == 0
        from servesim.build import build
        from servesim.simulation import run

        table = RequestTable(np.zeros(share.sum()), prompts[share], outputs[share])
        result = run(build(row_config(row, batch, tokens), table))
        counted = outputs[share].sum() + (prompts[share].sum() if row.metric == "total" else 0)
        simulated = row.instances * counted / result.summary["sim"]["simulated_s"]
        assert predicted == pytest.approx(simulated, rel=1e-9)
    assert simulate  # the public API is what studies build on


def test_static_rows_prefill_once_then_decode_together(tmp_path):
    row = read_published(write(tmp_path, ROWS))[2]
    trace = record_trace(row)
    assert len(trace.mixed) == 1 and trace.mixed[0].prefill_chunks == [(128, 0)] * 8
    assert sum(len(runs) for runs in trace.decode_runs.values()) >= 1
    assert set(trace.decode_runs) == {8} and trace.num_steps == 16


def test_engines_without_chunked_prefill_prefill_whole_prompts_in_steps_of_their_own(tmp_path):
    """vLLM's V0 engine (`vllm-cuda-v0`: chunked prefill off) runs a step of prompts or a step of
    decodes, never both; the V1 engine (`vllm`) mixes decodes with prompt chunks."""
    header = HEADER.replace(",source", ",source,engine")
    base = "h100-sxm,llama3-8b,bf16,bf16,bf16,1,1,64,4096,continuous,600,40,200,output,1,check,https://x/"
    rows = read_published(write(tmp_path, [f"v0,{base}v0,vllm-cuda-v0", f"v1,{base}v1,vllm"], header))
    v0, v1 = (record_trace(r) for r in rows)
    assert all(s.num_decodes == 0 for s in v0.mixed)
    assert any(s.num_decodes and s.prefill_chunks for s in v1.mixed)
    assert sum(c for s in v0.mixed for c, _ in s.prefill_chunks) == 200 * 600


def test_check_and_calibrate_end_to_end(tmp_path, capsys):
    path = write(tmp_path, ROWS)
    assert main(["costmodel", "check", "--throughput", path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in out["rows"]] == ["a", "b", "c"]
    assert out["summary"]["all"]["all"]["rows"] == 3 and "nvidia" in out["summary"]["all"]
    assert out["summary"]["check"]["mlperf"]["rows"] == 1  # MLPerf results are a group of their own
    assert main(["costmodel", "check", "--throughput", path, "--split", "check", "--markdown"]) == 0
    assert "| b | h100-sxm |" in capsys.readouterr().out
    prof = tmp_path / "p.yaml"
    argv = ["costmodel", "calibrate", "--throughput", path, "--out", str(prof),
            "--params", "gemm_compute_eff,step_overhead_s", "--json"]
    assert main(argv) == 0
    cal = json.loads(capsys.readouterr().out)
    assert cal["family"] == "hopper" and cal["summary"]["fit"]["rows"] == 2
    assert cal["summary"]["fit"]["median_abs_pct"] <= cal["summary"]["before"]["median_abs_pct"]
    header = prof.read_text()
    assert "https://x/a" in header and "https://x/c" in header and "/b" not in header
    assert load_profile(prof).gemm_compute_eff == pytest.approx(cal["profile"]["gemm_compute_eff"])
    # bad combinations are usage errors
    assert main(["costmodel", "calibrate", "--throughput", path, "--hardware", "h100-sxm", "--out", "x"]) == 2
    assert main(["costmodel", "check", "--throughput", path, "--family", "tpu"]) == 2


def test_scheduler_steps_is_an_optional_column_with_a_strict_value(tmp_path):
    header = HEADER.replace(",source", ",source,engine,scheduler_steps")
    rows = [r + ",vllm-cuda-v0," + n for r, n in zip(ROWS[:2], ("10", ""))]
    a, b = read_published(write(tmp_path, rows, header))
    assert (a.scheduler_steps, b.scheduler_steps) == (10, 1)
    trace = record_trace(b)
    assert predicted_throughput(a, trace, family_profile("hopper")) > predicted_throughput(
        b, trace, family_profile("hopper"))  # the same steps, a tenth of the host time between them
    with pytest.raises(InputFileError, match=r":3: scheduler_steps: must be >= 1"):
        read_published(write(tmp_path, [rows[0], rows[1] + "0"], header))
