"""Config: pydantic models, YAML loading and overrides. Imports nothing else of servesim but core."""

from servesim.config.loader import load_config, parse_assignment
from servesim.config.schema import SimConfig

__all__ = ["SimConfig", "load_config", "parse_assignment"]
