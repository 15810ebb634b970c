"""The KV cache's bug report, in its own module: an exception deriving from AssertionError cannot be
a native class, so it stays interpreted when the opt-in build compiles `kv.manager` (mypyc)."""


class KVConservationError(AssertionError):
    """KV blocks were created or lost: a bug in the engine or in a plugin."""
