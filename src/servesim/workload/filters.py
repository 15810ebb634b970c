"""Length filters: what happens to requests longer than a limit (the model's context, or a study's).

Empirical length files and traces hold requests a model cannot serve, or that a paper left out.
`workload.filter` caps the prompt and/or prompt + output of every request:
- `drop`: the request never arrives. Generated workloads draw lengths from the filtered distribution
  (over-long draws are drawn again, as papers sample from a filtered data set), so the arrival rate
  and count stay what the config says; a trace's over-long rows are removed;
- `clip`: the prompt is cut (keeping the output, as a client truncating a long context does), and the
  output too if it alone exceeds the total;
- `reject`: the request arrives and is rejected at once with the reason `exceeds_length_filter`.
Counts go to summary.json (`workload.dropped`, `workload.clipped`; rejections in `requests.rejected`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from servesim.core.errors import ConfigError
from servesim.workload.streams import substream
from servesim.workload.table import RequestTable

REJECT_REASON = "exceeds_length_filter"
MAX_REDRAWS = 100


@dataclass
class LengthLimit:
    """The caps of `workload.filter`, and how many over-long draws generated sources replaced."""

    max_total: int | None
    max_prompt: int | None
    redrawn: int = 0

    def over(self, prompt: np.ndarray, output: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(prompt), dtype=bool)
        if self.max_total is not None:
            mask |= prompt + output > self.max_total
        if self.max_prompt is not None:
            mask |= prompt > self.max_prompt
        return mask

    def resampling(self, sampler, key: str):
        """`sampler` restricted to lengths within the caps, by drawing over-long pairs again."""

        def draw(n: int, rng: np.random.Generator):
            prompt, output = (np.array(a, dtype=np.int64) for a in sampler(n, rng))
            over = self.over(prompt, output)
            for round_ in range(MAX_REDRAWS):
                if not over.any():
                    return prompt, output
                self.redrawn += int(over.sum())
                p, o = sampler(int(over.sum()), substream(rng, "filter", str(round_)))
                prompt[over], output[over] = p, o
                over = self.over(prompt, output)
            raise ConfigError(f"{key}.lengths", "cannot draw lengths within workload.filter "
                                                 f"(still over after {MAX_REDRAWS} draws)")

        return draw


@dataclass(frozen=True)
class FilterResult:
    """A request table after `workload.filter`: what it dropped, clipped or will reject."""

    table: RequestTable
    dropped: int = 0
    clipped: int = 0
    rejected: np.ndarray | None = None
    """Row mask of requests to reject at arrival (`reject`)."""
    active: bool = True

    def counts(self) -> dict | None:
        """summary.json's `workload` block (None when no filter is configured)."""
        if not self.active:
            return None
        rejected = int(self.rejected.sum()) if self.rejected is not None else 0
        return {"dropped": self.dropped, "clipped": self.clipped, "rejected": rejected}


def apply_length_filter(
    table: RequestTable, max_total: int | None, max_prompt: int | None, action: str
) -> FilterResult:
    over = LengthLimit(max_total, max_prompt).over(table.prompt_tokens, table.output_tokens)
    if not over.any():
        return FilterResult(table)
    if action == "drop":
        return FilterResult(table.take(~over), dropped=int(over.sum()))
    if action == "reject":
        return FilterResult(table, rejected=over)
    prompt, output = table.prompt_tokens.copy(), table.output_tokens.copy()
    if max_prompt is not None:
        prompt = np.minimum(prompt, max_prompt)
    if max_total is not None:
        output = np.minimum(output, max_total - 1)  # at least one prompt token stays
        prompt = np.minimum(prompt, max_total - output)
    return FilterResult(replace(table, prompt_tokens=prompt, output_tokens=output), clipped=int(over.sum()))
