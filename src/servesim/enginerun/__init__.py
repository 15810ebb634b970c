"""Engine runs as a first-class input: read a real engine's run folder, calibrate a profile to it,
and replay its workload through the simulator to compare (docs/fidelity.md)."""

from servesim.enginerun.folder import EngineRun, read_engine_run
from servesim.enginerun.steps import EngineSteps, read_steps

__all__ = ["EngineRun", "EngineSteps", "read_engine_run", "read_steps"]
