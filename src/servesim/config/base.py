"""Shared pydantic base: strict, frozen, documented fields."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config block: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
