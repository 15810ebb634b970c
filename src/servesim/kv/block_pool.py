"""Prefix caching: KV blocks named by the hash chain of their tokens, with reference counts and an
LRU of unreferenced blocks that stay cached until their memory is needed.

A request's prompt is described by `prefix_hashes`, one hash per `hash_block_size` tokens (the
Mooncake trace's 512-token `hash_ids`, or hashes that a synthetic session generates). Engine blocks
are smaller (16 tokens). Engine block `j` ends at token `e = (j + 1) * block_size`; it lies in hash
block `t = (e - 1) // hash_block_size`, and its content is the whole prompt up to `e`. So its key is
`(chain[t], e - t * hash_block_size)`: the chained hash of every hash block up to `t`, and how far
into block `t` it reaches. Two prompts share engine block `j` exactly when they agree on every hash
block up to `t` (equal hash ids mean equal tokens), which is the prefix property caching needs.
A 512-token hash block maps onto 32 engine blocks of 16 tokens; a trailing partial hash block
contributes its full engine blocks only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Sequence

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


class BlockKeys:
    """The keys of a prompt's engine blocks, derived from its hash chain (see the module docstring)."""

    __slots__ = ("chain", "hash_block_size", "block_size", "num_blocks")

    def __init__(self, prefix_hashes: Sequence[int], num_prompt_tokens: int, hash_block_size: int,
                 block_size: int):
        self.chain = chain_hashes(prefix_hashes)
        self.hash_block_size = hash_block_size
        self.block_size = block_size
        hashed_tokens = min(num_prompt_tokens, len(self.chain) * hash_block_size)
        self.num_blocks = hashed_tokens // block_size
        """Engine blocks that are full and covered by hashes: the cacheable ones."""

    def __getitem__(self, j: int) -> tuple[int, int]:
        end = (j + 1) * self.block_size
        t = (end - 1) // self.hash_block_size
        return (self.chain[t], end - t * self.hash_block_size)

    def first(self, n: int) -> list[tuple[int, int]]:
        return [self[j] for j in range(n)]


class PrefixBlockPool:
    """The cached blocks: key -> reference count, and the unreferenced ones in LRU order.

    Only counts live here; the KV manager decides what the counts mean for free memory
    (an unreferenced cached block is reclaimable: it counts as free until evicted or reused).
    """

    def __init__(self):
        self.ref_counts: dict[tuple[int, int], int] = {}
        self._evictable: OrderedDict[tuple[int, int], None] = OrderedDict()  # oldest first
        self.num_evictions = 0

    def __len__(self) -> int:
        return len(self.ref_counts)

    def __contains__(self, key) -> bool:
        return key in self.ref_counts

    @property
    def num_evictable(self) -> int:
        return len(self._evictable)

    def match(self, keys: BlockKeys, limit: int) -> int:
        """How many leading blocks (at most `limit`) are cached."""
        refs = self.ref_counts
        n = 0
        while n < limit and keys[n] in refs:
            n += 1
        return n

    def count_evictable(self, keys: Iterable) -> int:
        evictable = self._evictable
        return sum(1 for k in keys if k in evictable)

    def acquire(self, key) -> bool:
        """Reference a cached block; True if it was unreferenced (it leaves the LRU)."""
        count = self.ref_counts[key]
        self.ref_counts[key] = count + 1
        if count == 0:
            del self._evictable[key]
            return True
        return False

    def insert(self, key) -> None:
        """Name a freshly computed block; its one reference is the request that computed it."""
        assert key not in self.ref_counts
        self.ref_counts[key] = 1

    def release(self, keys: Sequence) -> int:
        """Drop one reference to each block; return how many became unreferenced.

        Released in reverse, so a prompt's tail is evicted before its head: heads are shared more.
        """
        refs, evictable = self.ref_counts, self._evictable
        freed = 0
        for key in reversed(keys):
            count = refs[key] - 1
            refs[key] = count
            if count == 0:
                evictable[key] = None
                freed += 1
        return freed

    def evict(self, n: int) -> None:
        """Forget the `n` least recently released unreferenced blocks."""
        assert n <= len(self._evictable)
        for _ in range(n):
            key, _ = self._evictable.popitem(last=False)
            del self.ref_counts[key]
        self.num_evictions += n
