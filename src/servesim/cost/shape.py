"""The shape of one engine step, as a cost model prices it (re-exported by `cost.base`).

Its own module so the opt-in compiled core can compile it: every step builds one and the cost
models read its fields, while `cost.base` keeps the runtime-checkable `CostModel` protocol,
which mypyc cannot compile.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, init=False)  # (`__init__` written out: compiled, a dataclass's is Python code)
class StepShape:
    """What one iteration computes, in the aggregates a cost model needs.

    `prefill_chunks` lists (chunk tokens, tokens already cached before the chunk) per prompt chunk;
    decodes are summarised by their count, the sum of their cached context lengths and the longest
    one (kernels without KV splitting wait for the longest sequence); with a sliding-window model,
    the contexts attention reads (each at most the window).
    `num_logit_tokens` is how many tokens need the LM head (decodes plus chunks that end a prompt).
    """

    prefill_chunks: list[tuple[int, int]]
    num_decodes: int
    decode_ctx_sum: int
    num_logit_tokens: int
    max_decode_ctx: int
    """Longest cached context among the decodes; -1: unknown, taken as the mean."""

    def __init__(
        self, prefill_chunks: list[tuple[int, int]] | None = None, num_decodes: int = 0,
        decode_ctx_sum: int = 0, num_logit_tokens: int = -1, max_decode_ctx: int = -1,
    ):
        self.prefill_chunks = [] if prefill_chunks is None else prefill_chunks
        self.num_decodes = num_decodes
        self.decode_ctx_sum = decode_ctx_sum
        if num_logit_tokens < 0:
            num_logit_tokens = num_decodes + len(self.prefill_chunks)
        self.num_logit_tokens = num_logit_tokens
        if max_decode_ctx < 0 and num_decodes:
            max_decode_ctx = -(-decode_ctx_sum // num_decodes)
        self.max_decode_ctx = max_decode_ctx

    @property
    def kv_tokens(self) -> int:
        """KV tokens the step's attention reads: every sequence's cached context and new tokens."""
        kv = self.decode_ctx_sum + self.num_decodes
        for c, p in self.prefill_chunks:  # (a loop: a generator costs more for the usual 1-2 chunks)
            kv += c + p
        return kv

    @property
    def num_tokens(self) -> int:
        tokens = self.num_decodes
        for c, _ in self.prefill_chunks:
            tokens += c
        return tokens
