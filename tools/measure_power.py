"""Measure GPU board power over steady engine-step loops (prefill, decode, mixed), idle and micro loads.

Each point replays one CUDA graph back to back (a Llama-3-8B-shaped forward pass with random bf16
weights, built by profile_gpu.Shard, or a micro kernel) for `--measure-s` seconds after `--warm-s`
seconds of warm-up, and reads the board's energy counter (NVML total energy, mJ) at both ends: average
power = energy / wall time. A sampler thread also records power, SM/memory clocks, temperature and the
clock-event (throttle) reasons every 25 ms. Nothing about the GPU's settings is changed.

    python tools/measure_power.py --out DIR      # ~100 s on one GPU; needs PyTorch with CUDA, pynvml, PyYAML

Writes power.csv (one row per loop), samples.csv.gz (the 25 ms samples) and device.json.
`tools/fit_power.py` fits the power profile to power.csv.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import threading
import time
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from profile_gpu import Shard, capture, shard_shape  # noqa: E402

CATALOG = HERE.parent / "src" / "servesim" / "catalog" / "models.yaml"
FIELDS = [
    "point", "kind", "model", "prefill_lens", "prior_ctx", "decode_batch", "decode_ctx", "sleep_ms",
    "step_ms", "steps", "window_s", "power_w", "energy_j_per_step", "power_sampled_w",
    "sm_clock_mhz", "mem_clock_mhz", "temp_c", "throttle_reasons", "power_limit_w",
]


class Nvml:
    """Board energy counter and a 25 ms sampler (pynvml, else nvidia-smi for samples only)."""

    def __init__(self):
        import pynvml as n

        n.nvmlInit()
        self.n, self.h = n, n.nvmlDeviceGetHandleByIndex(0)
        self.samples: list[tuple] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def energy_j(self) -> float:
        return self.n.nvmlDeviceGetTotalEnergyConsumption(self.h) / 1000.0

    def info(self) -> dict:
        n, h = self.n, self.h
        out = {}
        for key, fn in [
            ("power_limit_w", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000),
            ("default_power_limit_w", lambda: n.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000),
            ("max_sm_clock_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
            ("max_mem_clock_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_MEM)),
            ("driver", lambda: n.nvmlSystemGetDriverVersion()),
            ("name", lambda: n.nvmlDeviceGetName(h)),
        ]:
            try:
                value = fn()
                out[key] = value.decode() if isinstance(value, bytes) else value
            except Exception as exc:  # a field this driver does not expose
                out[key] = f"n/a ({type(exc).__name__})"
        return out

    def _reasons(self) -> int:
        n, h = self.n, self.h
        for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            if hasattr(n, name):
                try:
                    return int(getattr(n, name)(h))
                except Exception:
                    pass
        return -1

    def _loop(self) -> None:
        n, h = self.n, self.h
        while not self._stop.is_set():
            try:
                self.samples.append((
                    time.perf_counter(),
                    n.nvmlDeviceGetPowerUsage(h) / 1000.0,
                    n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
                    n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM),
                    n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
                    self._reasons(),
                ))
            except Exception:
                pass
            time.sleep(0.025)

    def window(self, t0: float, t1: float) -> dict:
        rows = [s for s in self.samples if t0 <= s[0] <= t1]
        if not rows:
            return {}
        mean = lambda i: sum(r[i] for r in rows) / len(rows)  # noqa: E731
        reasons = 0
        for r in rows:
            reasons |= max(r[5], 0)
        return dict(
            power_sampled_w=round(mean(1), 1), sm_clock_mhz=round(mean(2)), mem_clock_mhz=round(mean(3)),
            temp_c=round(mean(4), 1), throttle_reasons=hex(reasons),
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def steady(nvml: Nvml, replay, warm_s: float, measure_s: float, sleep_ms: float = 0.0) -> dict:
    """Replay back to back (or with a host sleep after each step); average power over the window."""
    t_end = time.perf_counter() + warm_s
    batch = 1
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        for _ in range(batch):
            replay()
            if sleep_ms:
                torch.cuda.synchronize()
                time.sleep(sleep_ms / 1000)
        torch.cuda.synchronize()
        took = time.perf_counter() - t
        if not sleep_ms and took < 0.02:
            batch *= 2
    e0, t0, steps = nvml.energy_j(), time.perf_counter(), 0
    pending = None
    while time.perf_counter() - t0 < measure_s:
        for _ in range(batch):
            replay()
            if sleep_ms:
                torch.cuda.synchronize()
                time.sleep(sleep_ms / 1000)
        ev = torch.cuda.Event()
        ev.record()
        if pending is not None:
            pending.synchronize()  # keep one batch queued: the GPU never waits for the host
        pending = ev
        steps += batch
    torch.cuda.synchronize()
    t1, e1 = time.perf_counter(), nvml.energy_j()
    window = t1 - t0
    return dict(
        step_ms=round(1000 * window / steps, 4) if steps else "", steps=steps, window_s=round(window, 3),
        power_w=round((e1 - e0) / window, 2), energy_j_per_step=round((e1 - e0) / steps, 5) if steps else "",
        **nvml.window(t0, t1),
    )


def micro_points(n_tiny: int = 2000):
    """Loads that isolate one term: launches only, HBM streaming only, tensor cores only."""
    tiny = torch.zeros(1, device="cuda")

    def launches():
        for _ in range(n_tiny):
            tiny.add_(1.0)

    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    return [
        ("launch_floor", launches),
        ("copy_1gib", lambda: dst.copy_(src)),
        ("gemm_8192", lambda: a @ b),
    ]


def llama_points():
    pts = [("decode", [], 0, b, 1024) for b in (1, 8, 32, 64, 128, 256)]
    pts.append(("decode", [], 0, 64, 4096))
    pts += [("prefill", [c], 0, 0, 0) for c in (512, 1024, 2048, 4096, 8192)]
    pts.append(("prefill_batch", [1024] * 4, 0, 0, 0))
    pts.append(("mixed", [512], 0, 64, 1024))
    return pts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="llama3-8b")
    ap.add_argument("--warm-s", type=float, default=1.2)
    ap.add_argument("--measure-s", type=float, default=3.0)
    ap.add_argument("--idle-s", type=float, default=5.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    torch.zeros(1, device="cuda")
    nvml = Nvml()
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    info = nvml.info() | {"torch": torch.__version__, "date_utc": stamp}
    (out / "device.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    f = open(out / "power.csv", "w", newline="")
    writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    limit = info.get("power_limit_w")

    def record(point, kind, res, **shape):
        row = dict(point=point, kind=kind, model=shape.pop("model", ""), power_limit_w=limit, **shape, **res)
        writer.writerow(row)
        f.flush()
        print(f"{time.time() - t_start:6.1f}s {point:28s} {res.get('power_w')} W  "
              f"step {res.get('step_ms')} ms  sm {res.get('sm_clock_mhz')} MHz  "
              f"{res.get('throttle_reasons')}", flush=True)

    # Idle: context alive, nothing queued (the state of an instance waiting for requests).
    time.sleep(1.0)
    e0, t0 = nvml.energy_j(), time.perf_counter()
    time.sleep(args.idle_s)
    t1, e1 = time.perf_counter(), nvml.energy_j()
    record("idle", "idle", dict(power_w=round((e1 - e0) / (t1 - t0), 2), window_s=round(t1 - t0, 3),
                                **nvml.window(t0, t1)))
    for name, fn in micro_points():
        record(name, "micro", steady(nvml, capture(fn), args.warm_s, args.measure_s))
    torch.cuda.empty_cache()
    catalog = yaml.safe_load(CATALOG.read_text())
    shard = Shard(shard_shape({"name": args.model, **catalog[args.model]}, 1), "masked")
    for kind, prefill, prior, batch, ctx in llama_points():
        replay = capture(shard.step(prefill, prior, batch, ctx))
        res = steady(nvml, replay, args.warm_s, args.measure_s)
        lens = "+".join(map(str, prefill))
        record(f"{kind}:{lens or '-'}:{batch}x{ctx}", kind, res, model=args.model, prefill_lens=lens,
               prior_ctx=prior, decode_batch=batch, decode_ctx=ctx)
        if kind == "decode" and batch == 32:
            # The same step with the host idle 10 ms after each: does the board drop to idle power
            # between steps (an instance serving light load)?
            res = steady(nvml, replay, args.warm_s, args.measure_s, sleep_ms=10.0)
            record(f"duty:{batch}x{ctx}", "decode_duty", res, model=args.model, prefill_lens="",
                   prior_ctx=0, decode_batch=batch, decode_ctx=ctx, sleep_ms=10.0)
        del replay
        torch.cuda.empty_cache()
    # Idle again at the end (warm board): leakage rises with temperature.
    time.sleep(1.0)
    e0, t0 = nvml.energy_j(), time.perf_counter()
    time.sleep(args.idle_s)
    t1, e1 = time.perf_counter(), nvml.energy_j()
    record("idle_end", "idle", dict(power_w=round((e1 - e0) / (t1 - t0), 2), window_s=round(t1 - t0, 3),
                                    **nvml.window(t0, t1)))
    f.close()
    nvml.close()
    with gzip.open(out / "samples.csv.gz", "wt") as g:
        g.write("t_s,power_w,sm_clock_mhz,mem_clock_mhz,temp_c,reasons\n")
        base = nvml.samples[0][0] if nvml.samples else 0.0
        for s in nvml.samples:
            g.write(f"{s[0] - base:.3f},{s[1]:.1f},{s[2]},{s[3]},{s[4]},{s[5]}\n")
    print(f"done in {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
