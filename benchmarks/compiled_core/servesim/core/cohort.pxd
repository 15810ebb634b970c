# Augments servesim/core/cohort.py for benchmarks/compiled_core_probe.py (variant hot_simpy_pxd): DecodeCohort becomes
# an extension type whose attributes are struct slots (read without a dict lookup); every
# attribute stays a Python object, so values and arithmetic are exactly the pure module's.
cdef class DecodeCohort:
    cdef public object block_size
    cdef public object window
    cdef public object _bases
    cdef public object _sorted
    cdef public object epoch
    cdef public object _ends
    cdef public object _first_kept
    cdef public object _joined_at
    cdef public object _members
    cdef public object _heap
    cdef public object _longest
    cdef public object _serial
    cdef public object _phase
    cdef public object _ctx_base_sum
    cdef public object gaps
    cdef public object _class_counts
    cdef public object _joiners
    cdef object __weakref__
