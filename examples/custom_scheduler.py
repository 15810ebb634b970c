"""A scheduling policy plugin in one file: shortest prompt first.

    servesim run configs/quickstart.yaml \\
        --set engine.scheduler=examples.custom_scheduler:ShortestPromptFirst
    servesim run configs/quickstart.yaml --set engine.batching=chunked \\
        --set engine.scheduler='{name: examples.custom_scheduler:ShortestPromptFirst, bucket_tokens: 256}'

A policy only orders requests; the engine does the rest (admission with prefix caching, KV,
preemption of the largest key, swap, disaggregation, either batching). See docs/schedulers.md.
"""

from __future__ import annotations

from pydantic import Field

from servesim.schedulers import BasePolicy, PolicyParams


class ShortestPromptFirstParams(PolicyParams):
    bucket_tokens: int = Field(1, ge=1)
    """Compare prompts in buckets of this many tokens, arrival order within one (1: exactly)."""


class ShortestPromptFirst(BasePolicy):
    """Waiting requests start shortest prompt first; running ones keep their batch slots."""

    Params = ShortestPromptFirstParams
    rank_changes = "never"  # a key is fixed at arrival: the engine keeps the queue sorted

    def rank_key(self, request, now: float) -> tuple:
        bucket = request.num_prompt_tokens // self.params.bucket_tokens
        return (bucket, request.arrival_time, request.request_id)
