"""servesim: a discrete-event simulator for LLM serving clusters."""

__version__ = "0.1.0"
__all__ = ["SimulationResult", "simulate", "__version__"]


def __getattr__(name: str):
    # The simulation module pulls in the engine, pandas and the metrics: import it on first use so
    # `servesim --help`, `validate` and subpackage imports start quickly.
    if name in ("SimulationResult", "simulate"):
        from servesim import simulation

        return getattr(simulation, name)
    raise AttributeError(f"module 'servesim' has no attribute {name!r}")
