"""Hardware and model specs as data."""

from servesim.catalog.specs import (
    HardwareSpec,
    ModelSpec,
    get_hardware,
    get_model,
    hardware_names,
    model_names,
)

__all__ = ["HardwareSpec", "ModelSpec", "get_hardware", "get_model", "hardware_names", "model_names"]
