"""Shared pydantic base: strict, frozen, documented fields."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config block: unknown keys are errors, values are immutable once loaded, numbers finite
    (`.nan` and `.inf` are errors: a NaN rate or length silently breaks the arithmetic downstream)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )
