"""The latency of a request served alone: the reference of slowdown objectives.

Alone on an instance, a request's prompt runs in the fewest steps the engine's token budget allows
(`step_tokens` per step, the last chunk producing the first token), then each further output token
is one decode step of batch one over the context so far. Queueing, batching with other requests and
KV transfer are absent by definition. Decode steps are priced through `decode_step_times`, many
requests at once.
"""

from __future__ import annotations

import numpy as np

from servesim.cost.base import CostModel, StepShape

BATCH_TOKENS = 1 << 21
"""Decode contexts priced per numpy call (bounds memory for long outputs)."""


def isolated_prefill(cost_model: CostModel, prompt: np.ndarray, step_tokens: int) -> np.ndarray:
    """Seconds from the first prompt step to the first token, per request."""
    cache: dict[int, float] = {}
    out = np.empty(len(prompt))
    for i, p in enumerate(np.asarray(prompt).tolist()):
        t = cache.get(p)
        if t is None:
            t, done = 0.0, 0
            while done < p:
                chunk = min(step_tokens, p - done)
                last = done + chunk == p
                t += cost_model.step_time(StepShape([(chunk, done)], 0, 0, 1 if last else 0))
                done += chunk
            cache[p] = t
        out[i] = t
    return out


def isolated_decode(
    cost_model: CostModel, prompt: np.ndarray, output: np.ndarray, window: int = 0
) -> np.ndarray:
    """Seconds from the first token to the last, per request: output - 1 decode steps of batch one
    whose contexts run from the prompt length up (capped at `window` when the model has one)."""
    prompt = np.asarray(prompt, dtype=np.int64)
    steps = np.maximum(np.asarray(output, dtype=np.int64) - 1, 0)
    out = np.zeros(len(prompt))
    start = 0
    while start < len(prompt):
        # as many requests as fit in one batch of contexts (at least one)
        cum = np.cumsum(steps[start:])
        stop = start + max(1, int(np.searchsorted(cum, BATCH_TOKENS, side="right")))
        n = steps[start:stop]
        total = int(n.sum())
        if total:
            first = np.repeat(np.cumsum(n) - n, n)
            ctx = np.arange(total) - first + np.repeat(prompt[start:stop], n)
            if window:
                ctx = np.minimum(ctx, window)
            times = cost_model.decode_step_times(1, ctx.astype(np.float64))
            sums = np.concatenate(([0.0], np.cumsum(times)))
            ends = np.cumsum(n)
            out[start:stop] = sums[ends] - sums[ends - n]
        start = stop
    return out
