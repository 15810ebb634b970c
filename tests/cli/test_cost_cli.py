"""`servesim costmodel calibrate | validate | price` end to end, and bad measurement files."""

import json
from pathlib import Path

import pytest
import yaml

from servesim.cli import main
from servesim.cost.profile import family_profile, save_profile

HEADER = "gpu,model,tp,kind,prefill_lens,prior_ctx,decode_batch,decode_ctx,ms,includes_comm\n"
GPU = "NVIDIA H100 80GB HBM3"
ROWS = [
    f"{GPU},llama3-8b,1,prefill,512,0,0,0,13.8,1",
    f"{GPU},llama3-8b,1,prefill,4096,0,0,0,109.5,1",
    f"{GPU},llama3-8b,1,prefill_batch,256+256+256+256,0,0,0,26.9,1",
    f"{GPU},llama3-8b,1,decode,,0,1,128,6.58,1",
    f"{GPU},llama3-8b,1,decode,,0,64,2048,12.5,1",
    f"{GPU},llama3-8b,1,decode,,0,256,512,14.5,1",
    f"{GPU},llama3-8b,1,mixed,512,2048,16,1024,19.7,1",
    f"{GPU},llama3-70b,4,decode,,0,32,512,16.9,0",
]


def write(tmp_path: Path, rows, name="m.csv", header=HEADER) -> str:
    p = tmp_path / name
    p.write_text(header + "\n".join(rows) + "\n")
    return str(p)


def validate(csv, *extra):
    """argv of `servesim costmodel validate` on one measurements file."""
    return ["costmodel", "validate", "--measurements", csv, *extra]


def calibrate(csv, out, *extra):
    """argv of `servesim costmodel calibrate` on the H100 from one measurements file."""
    return ["costmodel", "calibrate", "--measurements", csv, "--hardware", "h100-sxm", "--out", out, *extra]


def run_json(capsys, argv):
    code = main(argv + ["--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def test_validate_reports_errors(tmp_path, capsys):
    csv = write(tmp_path, ROWS)
    argv = validate(csv, "--hardware", "h100-sxm")
    code, rep, _ = run_json(capsys, argv)
    assert code == 0
    assert rep["rows"] == len(ROWS)
    assert 0 <= rep["mape"] <= rep["p90_ape"] <= rep["max_ape"] < 30
    assert rep["worst"][0]["line"] in range(2, len(ROWS) + 2)
    assert "all decode" in rep["by_kind"] and "llama3-70b tp4 decode" in rep["by_kind"]
    # without --hardware the gpu column names the device
    code, rep2, _ = run_json(capsys, validate(csv))
    assert code == 0 and rep2["mape"] == rep["mape"]
    assert main(validate(csv)) == 0
    assert "MAPE" in capsys.readouterr().out


def test_calibrate_writes_a_profile_that_validate_uses(tmp_path, capsys):
    csv = write(tmp_path, ROWS)
    prof, bad = tmp_path / "p.yaml", tmp_path / "bad.yaml"
    save_profile(family_profile("hopper").with_values(gemm_compute_eff=0.3, step_overhead_s=0.002), bad)
    code, out, _ = run_json(
        capsys,
        calibrate(
            csv,
            str(prof),
            "--params",
            "gemm_compute_eff,attn_decode_memory_eff,step_overhead_s",
            "--start",
            str(bad),
        ),
    )
    assert code == 0 and prof.exists()
    assert out["fitted"] == ["gemm_compute_eff", "attn_decode_memory_eff", "step_overhead_s"]
    assert out["after"]["mape"] < out["before"]["mape"] / 2
    params = yaml.safe_load(prof.read_text())["parameters"]
    assert params["gemm_compute_eff"] == pytest.approx(out["profile"]["gemm_compute_eff"])
    code, rep, _ = run_json(
        capsys,
        validate(csv, "--hardware", "h100-sxm", "--profile", str(prof)),
    )
    assert code == 0 and rep["mape"] == pytest.approx(out["after"]["mape"])


def test_calibrate_holdout_and_microbenchmarks(tmp_path, capsys):
    csv = write(tmp_path, ROWS)
    gemm = tmp_path / "g.csv"
    gemm.write_text("gpu,M,K,N,ms\nh100-sxm,1,4096,4096,0.02\nh100-sxm,4096,4096,4096,0.21\n")
    ar = tmp_path / "a.csv"
    ar.write_text("gpu,num_workers,bytes,ms\nh100-sxm,4,1048576,0.04\nh100-sxm,4,67108864,0.31\n")
    code, out, _ = run_json(
        capsys,
        calibrate(
            csv,
            str(tmp_path / "p.yaml"),
            "--holdout",
            "kind=mixed",
            "--gemm",
            str(gemm),
            "--allreduce",
            str(ar),
            "--params",
            "gemm_compute_eff,comm_bw_eff",
        ),
    )
    assert code == 0
    assert out["holdout"]["rows"] == 1 and out["after"]["rows"] == len(ROWS) - 1
    assert [m["kind"] for m in out["microbench"]] == ["GemmData", "AllReduceData"]


def test_price_breakdown(capsys):
    code, out, _ = run_json(
        capsys,
        [
            "costmodel",
            "price",
            "--model",
            "llama3-70b",
            "--hardware",
            "h100-sxm",
            "--tp",
            "4",
            "--prefill",
            "512",
            "--decodes",
            "32",
            "--ctx",
            "1000",
        ],
    )
    assert code == 0 and out["total_s"] > 0 and out["comm_s"] > 0
    assert sum(out["by_op"].values()) == pytest.approx(out["total_s"])


@pytest.mark.parametrize(
    "row, line, fragment",
    [
        (f"{GPU},llama3-8b,1,decode,,0,8,abc,6.5,1", 3, "decode_ctx: expected an integer"),
        (f"{GPU},llama3-8b,1,decode,,0,8,128,fast,1", 3, "ms: expected a number"),
        (f"{GPU},llama9-8b,1,decode,,0,8,128,6.5,1", 3, "unknown model 'llama9-8b'"),
        (f"{GPU},llama3-8b,1,warmup,,0,8,128,6.5,1", 3, "kind: expected one of"),
        (f"{GPU},llama3-8b,1,decode,,0,8,128", 3, "wrong number of fields"),
        (f"{GPU},llama3-8b,3,decode,,0,8,128,6.5,1", 3, "tp: 3 does not divide"),
        (f"{GPU},llama3-8b,1,prefill,12+x,0,0,0,6.5,1", 3, "prefill_lens"),
        (f"{GPU},llama3-8b,1,decode,,0,8,128,-1,1", 3, "ms: must be a positive number"),
        (f"{GPU},llama3-8b,1,decode,,0,8,128,6.5,2", 3, "includes_comm: expected 0 or 1, got '2'"),
        (f"{GPU},llama3-8b,1,decode,512,0,8,128,6.5,1", 3, "kind decode: needs decode_batch >= 1"),
        (f"{GPU},llama3-8b,1,mixed,512,0,0,0,6.5,1", 3, "kind mixed: needs both"),
        (",llama3-8b,1,decode,,0,8,128,6.5,1", 3, "gpu: empty"),
    ],
)
def test_bad_rows_exit_2_naming_the_line(tmp_path, capsys, row, line, fragment):
    csv = write(tmp_path, [ROWS[0], row])
    for argv in (
        validate(csv, "--hardware", "h100-sxm"),
        calibrate(csv, str(tmp_path / "p.yaml")),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{csv}:{line}:" in err and fragment in err
    assert not (tmp_path / "p.yaml").exists()  # nothing written half-way


def test_missing_column_unknown_gpu_and_hardware(tmp_path, capsys):
    bad_header = write(tmp_path, [ROWS[0]], header=HEADER.replace("decode_ctx,", ""))
    assert main(validate(bad_header)) == 2
    assert "missing column(s) decode_ctx" in capsys.readouterr().err
    unknown_gpu = write(tmp_path, [ROWS[0], ROWS[1].replace(GPU, "Mystery GPU 9000")], name="u.csv")
    assert main(validate(unknown_gpu)) == 2
    err = capsys.readouterr().err
    assert f"{unknown_gpu}:3:" in err and "unknown device 'Mystery GPU 9000'" in err
    assert main(validate(unknown_gpu, "--hardware", "h99")) == 2
    assert "--hardware: unknown hardware 'h99'" in capsys.readouterr().err
    assert main(validate(str(tmp_path / "none.csv"))) == 2
    assert "cannot read" in capsys.readouterr().err


def test_bad_profile_and_arguments(tmp_path, capsys):
    csv = write(tmp_path, ROWS)
    prof = tmp_path / "bad.yaml"
    prof.write_text("parameters:\n  gemm_compute_eff: fast\n")
    assert main(validate(csv, "--profile", str(prof))) == 2
    assert "gemm_compute_eff: expected a number" in capsys.readouterr().err
    assert main(validate(csv, "--profile", str(tmp_path / "no.yaml"))) == 2
    assert "--profile" in capsys.readouterr().err
    out = str(tmp_path / "p.yaml")
    argv = calibrate(csv, out)
    assert main(argv + ["--params", "warp_speed"]) == 2
    assert "--params: unknown parameter 'warp_speed'" in capsys.readouterr().err
    assert main(argv + ["--holdout", "kind=nothing"]) == 2
    assert main(["costmodel", "calibrate", "--hardware", "h100-sxm", "--out", out]) == 2
    assert main(["costmodel", "price", "--model", "llama3-8b", "--hardware", "h100-sxm", "--tp", "3"]) == 2
    assert "--tp: 3 does not divide the 32 attention heads" in capsys.readouterr().err
