"""The engine profile: what a serving engine adds to the GPU time of a step.

A roofline prices the kernels. A real engine also spends CPU time on every step: it schedules and
builds the inputs before launching (serial: the GPU waits), issues the kernels while the GPU runs them
(enqueue: overlapped with the GPU), and collects the tokens after the device synchronises (serial
again). Eager PyTorch steps launch hundreds of kernels from Python, so short prefill steps are bound by
the host; CUDA-graph decode steps launch one graph. The step lasts

    serial + max(gpu, enqueue + tail)

where `tail` is the GPU work still to run after the last launch of a host-bound step. Serial and
enqueue time are linear in the step's content (`FEATURES`), with separate coefficients for steps that
replay a CUDA graph and for eager steps. A pure-decode step replays a graph when its batch is at most the
largest of `graph_batch_sizes`, padded up to the next captured size (the GEMMs then run on the padded
rows). `servesim costmodel calibrate --engine-run` fits the coefficients from an engine's step log.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

MODES = ("graph", "eager")
PARTS = ("serial", "enqueue")
FEATURES = ("const", "seqs", "chunks", "tokens", "kv_tokens")
"""Per step: 1, sequences in the batch, prefill-attention calls (`EngineProfile.attention_calls`),
query tokens, KV tokens attended (every sequence's cached context plus its new tokens)."""
PREFILL_ATTENTION = ("per_chunk", "batched")
"""How an engine launches a step's prefill attention: one call per chunk (flash attention or SDPA
called per prompt) or one varlen/paged call for all chunks of the step."""
HOST_TERMS = tuple(f"host.{m}.{p}.{f}" for m in MODES for p in PARTS for f in FEATURES) + tuple(
    f"host.{m}.tail" for m in MODES
)
"""Names of the host coefficients as profile parameters (seconds per unit of the feature)."""


@dataclass(frozen=True)
class EngineProfile:
    graph_batch_sizes: tuple[int, ...] = ()
    """Batch sizes with a captured CUDA graph for pure-decode steps, ascending; empty: every step is
    eager and unpadded."""
    host: dict[str, float] = field(default_factory=dict, hash=False)
    """Host coefficients by name (`HOST_TERMS`, without the `host.` prefix); missing ones are 0."""
    prefill_attention: str = "per_chunk"
    """`per_chunk`: the engine calls prefill attention once per chunk, so kernel launches (host
    time, and a kernel per layer on the GPU) grow with the chunks of a step; `batched`: one call
    for all of them (one of `PREFILL_ATTENTION`)."""
    decode_serial_share: float = 1.0
    """Fraction of the serial host time a pure-decode step waits for: 1 for an engine that schedules
    every step (the host terms are fitted per scheduled step), 1/N when it schedules N decode steps
    at once (vLLM V0's `--num-scheduler-steps N`), whose scheduling, input preparation and output
    processing then run once for the N steps."""

    def attention_calls(self, num_chunks: int) -> int:
        """Prefill-attention calls per layer of a step with `num_chunks` chunks: the `chunks`
        feature of the host model."""
        if self.prefill_attention == "batched" and num_chunks > 1:
            return 1
        return num_chunks

    def coefficient(self, name: str) -> float:
        return float(self.host.get(name, 0.0))

    @cached_property
    def has_host(self) -> bool:
        return any(v for v in self.host.values())

    @cached_property
    def _terms(self) -> dict[str, tuple[tuple[float, ...], tuple[float, ...], float]]:
        """Per mode: serial and enqueue coefficients in `FEATURES` order, and the tail."""
        return {
            mode: (
                tuple(self.coefficient(f"{mode}.serial.{f}") for f in FEATURES),
                tuple(self.coefficient(f"{mode}.enqueue.{f}") for f in FEATURES),
                self.coefficient(f"{mode}.tail"),
            )
            for mode in MODES
        }

    def graph_batch(self, num_decodes: int) -> int:
        """Rows a pure-decode step of this batch computes: its captured size, or 0 if eager."""
        sizes = self.graph_batch_sizes
        if not sizes or num_decodes > sizes[-1]:
            return 0
        return sizes[bisect.bisect_left(sizes, num_decodes)]

    def host_times(self, mode: str, seqs, chunks, tokens, kv_tokens):
        """(serial, enqueue, tail) seconds for steps of that content (floats or arrays)."""
        s, e, tail = self._terms[mode]
        serial = s[0] + s[1] * seqs + s[2] * chunks + s[3] * tokens + s[4] * kv_tokens
        enqueue = e[0] + e[1] * seqs + e[2] * chunks + e[3] * tokens + e[4] * kv_tokens
        return serial, enqueue, tail

    def step_time(self, gpu, mode: str, seqs, chunks, tokens, kv_tokens, decode: bool = False):
        """Wall time of a step whose kernels take `gpu` seconds (float or array); `decode`: a
        pure-decode step, which waits for `decode_serial_share` of the serial host time."""
        if not self.has_host:
            return gpu
        serial, enqueue, tail = self.host_times(mode, seqs, chunks, tokens, kv_tokens)
        if decode and self.decode_serial_share != 1.0:
            serial = serial * self.decode_serial_share
        if isinstance(gpu, np.ndarray):
            return serial + np.maximum(gpu, enqueue + tail)
        launched = enqueue + tail
        return serial + (gpu if gpu > launched else launched)

    def to_dict(self) -> dict:
        out: dict = {"graph_batch_sizes": list(self.graph_batch_sizes)}
        if self.host:
            out["host"] = {k: float(v) for k, v in sorted(self.host.items()) if v}
        if self.prefill_attention != "per_chunk":
            out["prefill_attention"] = self.prefill_attention
        return out


def engine_from_dict(data, where: str) -> EngineProfile:
    """The `engine:` section of a profile file; errors name the file and the key."""
    from servesim.core.errors import InputFileError

    if data is None:
        return EngineProfile()
    if not isinstance(data, dict):
        raise InputFileError(where, "engine: expected a mapping")
    unknown = set(data) - {"graph_batch_sizes", "host", "prefill_attention"}
    if unknown:
        raise InputFileError(where, f"engine: unknown key {sorted(unknown)[0]!r}")
    sizes = data.get("graph_batch_sizes") or []
    if not isinstance(sizes, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes
    ):
        raise InputFileError(where, "engine.graph_batch_sizes: expected a list of positive integers")
    host = data.get("host") or {}
    if not isinstance(host, dict):
        raise InputFileError(where, "engine.host: expected a mapping of coefficients")
    valid = {t[len("host.") :] for t in HOST_TERMS}
    for key, value in host.items():
        if key not in valid:
            raise InputFileError(where, f"engine.host: unknown coefficient {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InputFileError(where, f"engine.host.{key}: expected a number >= 0, got {value!r}")
    attention = data.get("prefill_attention", "per_chunk")
    if attention not in PREFILL_ATTENTION:
        choices = ", ".join(PREFILL_ATTENTION)
        raise InputFileError(where, f"engine.prefill_attention: expected one of {choices}, got {attention!r}")
    return EngineProfile(tuple(sorted(set(sizes))), {k: float(v) for k, v in host.items()}, attention)
