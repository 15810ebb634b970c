"""Shared pydantic base: strict, frozen, documented fields."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config block: unknown keys are errors, values are immutable once loaded."""

    # Field docstrings document the source; reading them into pydantic (use_attribute_docstrings)
    # parsed every config module's source at import, a tenth of a second of every start.
    model_config = ConfigDict(extra="forbid", frozen=True)
