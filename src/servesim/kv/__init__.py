"""KV cache: block accounting, and (with prefix caching) shared blocks keyed by hash."""

from servesim.kv.manager import KVCacheManager

__all__ = ["KVCacheManager"]
