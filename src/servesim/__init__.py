"""servesim: a discrete-event simulator for LLM serving clusters."""

from servesim.simulation import SimulationResult, simulate

__version__ = "0.1.0"
__all__ = ["SimulationResult", "simulate", "__version__"]
