"""Prefix caching: KV blocks named by the hash chain of their tokens, with reference counts and an
LRU of unreferenced blocks that stay cached until their memory is needed.

A request's prompt is described by `prefix_hashes`, one hash per `hash_block_size` tokens (the
Mooncake trace's 512-token `hash_ids`, or hashes that synthetic sessions generate); equal hashes
mean equal tokens. The chain `chain[t]` folds in every hash up to block `t`, so it names the whole
prompt prefix through block `t`.

Engine blocks (16 tokens) are cached in *segments*: segment `t` holds the engine blocks whose last
token lies in hash block `t` (32 blocks for a full 512-token hash block; the full engine blocks of a
trailing partial one). Its key is `(chain[t], number of blocks)`, so two prompts share a segment
exactly when they agree on every token up to its end. A segment is the unit of naming, sharing
and eviction, as in Mooncake's block-level cache; blocks are still counted one by one, so free
memory and allocation stay exact. Partially computed segments are not shared until complete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from servesim.kv.eviction import EvictionPolicy, LRUPolicy

_MASK = (1 << 64) - 1
_CHAIN_SEED = 0x9E3779B97F4A7C15


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a fixed, well-spread 64-bit hash of an integer (no process salt)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def chain_hashes(hashes: Sequence[int]) -> list[int]:
    """`out[t]` identifies the prefix `hashes[: t + 1]`: each link folds in every earlier block."""
    out, h = [], _CHAIN_SEED
    for x in hashes:
        h = mix64(h ^ mix64(int(x) & _MASK))
        out.append(h)
    return out


class PromptSegments:
    """A prompt's cacheable segments, in order: `keys[i]`, and `ends[i]`, the engine blocks from the
    prompt's start through segment `i`."""

    __slots__ = ("ends", "keys")

    def __init__(
        self, prefix_hashes: Sequence[int], num_prompt_tokens: int, hash_block_size: int,
        block_size: int,
    ):
        chain = chain_hashes(prefix_hashes)
        hashed = min(num_prompt_tokens, len(chain) * hash_block_size)
        self.keys: list[tuple[int, int]] = []
        self.ends: list[int] = []
        done = 0  # engine blocks ending at or before the current hash block's start
        for t, link in enumerate(chain):
            end_token = min((t + 1) * hash_block_size, hashed)
            blocks = end_token // block_size
            if blocks > done:  # hash blocks shorter than an engine block may end none
                self.keys.append((link, blocks - done))
                self.ends.append(blocks)
                done = blocks
            if end_token >= hashed:
                break

    @property
    def num_blocks(self) -> int:
        return self.ends[-1] if self.ends else 0


class PrefixBlockPool:
    """The cached segments: key -> reference count and block count; unreferenced ones ordered by
    an eviction policy (`kv.eviction`, LRU by default).

    Only counts live here; the KV manager decides what they mean for free memory (an unreferenced
    cached block is reclaimable: it counts as free until evicted or reused). `on_evict(key)`, when
    set, hears of every evicted segment (offload to a lower tier).
    """

    def __init__(self, policy: EvictionPolicy | None = None):
        self.ref_counts: dict[tuple[int, int], int] = {}
        self._evictable: EvictionPolicy = policy if policy is not None else LRUPolicy()
        self.on_evict: Callable[..., None] | None = None
        self._programs: dict = {}  # unreferenced segment -> the program that last released it
        self.num_blocks = 0
        """Engine blocks in cached segments, referenced or not."""
        self.num_evictable_blocks = 0
        self.num_evicted_blocks = 0

    def __len__(self) -> int:
        return len(self.ref_counts)

    def __contains__(self, key) -> bool:
        return key in self.ref_counts

    def match(self, segments: PromptSegments, max_blocks: int) -> int:
        """Leading segments that are cached and end within `max_blocks`; how many."""
        refs, ends = self.ref_counts, segments.ends
        n = 0
        for key in segments.keys:
            if ends[n] > max_blocks or key not in refs:
                break
            n += 1
        return n

    def evictable_blocks(self, keys: Sequence) -> int:
        evictable = self._evictable
        return sum(key[1] for key in keys if key in evictable)

    def acquire(self, key) -> int:
        """Reference a cached segment; return its blocks if it was unreferenced (it leaves the LRU)."""
        count = self.ref_counts[key]
        self.ref_counts[key] = count + 1
        if count:
            return 0
        self._evictable.remove(key)
        self._programs.pop(key, None)
        self.num_evictable_blocks -= key[1]
        return key[1]

    def insert(self, key) -> None:
        """Name a freshly computed segment; its one reference is the request that computed it."""
        assert key not in self.ref_counts
        self.ref_counts[key] = 1
        self.num_blocks += key[1]

    def release(self, keys: Sequence, program: int = -1) -> int:
        """Drop one reference to each segment; return the blocks that became unreferenced.

        Released in reverse, so a prompt's tail is evicted before its head: heads are shared more.
        `program` tags them for program-aware eviction.
        """
        refs, evictable = self.ref_counts, self._evictable
        freed = 0
        for key in reversed(keys):
            count = refs[key] - 1
            refs[key] = count
            if count == 0:
                evictable.add(key, program)
                if program >= 0:
                    self._programs[key] = program
                freed += key[1]
        self.num_evictable_blocks += freed
        return freed

    def evict(self, num_blocks: int) -> int:
        """Forget least recently released segments until `num_blocks` blocks are reclaimed;
        return the blocks reclaimed (whole segments: possibly more)."""
        assert num_blocks <= self.num_evictable_blocks
        freed = 0
        while freed < num_blocks:
            key = self._evictable.pop_victim()
            del self.ref_counts[key]
            freed += key[1]
            program = self._programs.pop(key, -1)
            if self.on_evict is not None:
                self.on_evict(key, program)
        self.num_evictable_blocks -= freed
        self.num_blocks -= freed
        self.num_evicted_blocks += freed
        return freed

    def forget(self, keys: Sequence, offload: bool = False) -> int:
        """Drop the unreferenced segments among `keys` now (no memory moves: they counted as
        free); with `offload`, they go to the lower tier as evictions do. Blocks dropped."""
        dropped = 0
        for key in keys:
            if self.ref_counts.get(key) == 0:
                self._evictable.remove(key)
                del self.ref_counts[key]
                dropped += key[1]
                program = self._programs.pop(key, -1)
                if offload and self.on_evict is not None:
                    self.on_evict(key, program)
        self.num_evictable_blocks -= dropped
        self.num_blocks -= dropped
        self.num_evicted_blocks += dropped
        return dropped

    def expired(self, now: float) -> list:
        """Unreferenced segments a time-based policy wants gone."""
        return self._evictable.expired(now)
