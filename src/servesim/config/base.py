"""Shared pydantic base: strict, frozen, documented fields; the one shape of a component."""

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic_core import core_schema


def _check_component(value: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(value, dict):
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("a component block needs `name:` (a built-in name or module:Class)")
    elif not value:
        raise ValueError("expected a built-in name or module:Class")
    return value


_COMPONENT = AfterValidator(_check_component)

Component = Annotated[str | dict[str, Any], _COMPONENT]
"""A pluggable part: its name (`srtf`, `mylab.policies:Mine`), or `{name: ..., <its parameters>}`.
A block without `name` keeps the field's default name (`engine.predictor.sigma=1` alone)."""


class Section(BaseModel):
    """A config block: unknown keys are errors, values are immutable once loaded, numbers finite
    (`.nan` and `.inf` are errors: a NaN rate or length silently breaks the arithmetic downstream)."""

    # Field docstrings document the source; reading them into pydantic (use_attribute_docstrings)
    # parsed every config module's source at import, a tenth of a second of every start.
    # A section's validator is built when it first validates (`defer_build`), and a section nested
    # in another is validated by its own (`Nested`): a config builds only what it states or defaults.
    # Section modules do not use `from __future__ import annotations`: pydantic would compile and
    # evaluate every field's annotation string when the class is made (~5 ms of each start).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _default_component_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key, field in cls.model_fields.items():
            value = data.get(key)
            if (
                isinstance(value, dict)
                and "name" not in value
                and _COMPONENT in field.metadata
                and isinstance(field.default, str)
            ):
                data = {**data, key: {"name": field.default, **value}}
        return data


def split_component(value: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, parameters) of a component value."""
    if isinstance(value, str):
        return value, {}
    data = dict(value)
    return data.pop("name"), data


class _OwnValidator:
    """Validates a nested section with the section's own validator instead of inlining its schema
    into the enclosing one: building every section's schema cost ~0.015 s of each start, and most
    configs leave most sections out (a left-out section is its default, made when first asked
    for). Errors are the same: pydantic places the section's errors under the field's key."""

    def __get_pydantic_core_schema__(self, source: type[Section], handler) -> core_schema.CoreSchema:
        def validate(value: Any) -> Section:
            return value if isinstance(value, source) else source.model_validate(value)

        def json_schema(_, js_handler):  # `model_json_schema()`: the section's own, built then
            return js_handler(source.__pydantic_core_schema__)

        return core_schema.no_info_plain_validator_function(
            validate, metadata={"pydantic_js_functions": [json_schema]}
        )


SectionT = TypeVar("SectionT", bound=Section)
Nested = Annotated[SectionT, _OwnValidator()]
"""A section inside another (`cluster: Nested[ClusterConfig]`): validated by its own validator,
built on first use. Its default must be a `default_factory`, so that leaving it out builds nothing
at import."""
