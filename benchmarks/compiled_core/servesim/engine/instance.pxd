# Augments servesim/engine/instance.py for benchmarks/compiled_core_probe.py (variant hot_simpy_pxd): Instance becomes
# an extension type whose attributes are struct slots (read without a dict lookup); every
# attribute stays a Python object, so values and arithmetic are exactly the pure module's.
cdef class Instance:
    cdef public object env
    cdef public object index
    cdef public object scheduler
    cdef public object cost_model
    cdef public object kv
    cdef public object cohort
    cdef public object step_log
    cdef public object on_finish
    cdef public object on_reject
    cdef public object swap_s_per_token
    cdef public object role
    cdef public object hand_off
    cdef public object max_run_steps
    cdef public object num_incoming
    cdef public object num_incoming_tokens
    cdef public object power
    cdef public object meter
    cdef public object _caching
    cdef public object _prefill_rate
    cdef public object after_step
    cdef public object load_listeners
    cdef public object slowdown
    cdef public object busy_s
    cdef public object between_steps
    cdef public object leaving
    cdef public object failed
    cdef public object mixed_runs
    cdef public object pooled_gaps
    cdef public object gaps
    cdef public object _idle
    cdef public object arrivals_in_run
    cdef public object _interruptible
    cdef public object view
    cdef public object process
    cdef object __weakref__
