# Augments servesim/kv/manager.py for benchmarks/compiled_core_probe.py (variant hot_simpy_pxd): KVCacheManager becomes
# an extension type whose attributes are struct slots (read without a dict lookup); every
# attribute stays a Python object, so values and arithmetic are exactly the pure module's.
cdef class KVCacheManager:
    cdef public object num_blocks
    cdef public object block_size
    cdef public object num_free_blocks
    cdef public object watermark_blocks
    cdef public object peak_used_blocks
    cdef public object cohort
    cdef public object prefix
    cdef public object tiers
    cdef public object retention
    cdef public object now
    cdef public object hit_tokens
    cdef public object peer_hit_tokens
    cdef public object _swapped
    cdef public object tier_log
    cdef public object hash_block_size
    cdef public object held
    cdef public object _blocks
    cdef public object _segments
    cdef public object _reserved_until
    cdef public object num_detached_blocks
    cdef object __weakref__
