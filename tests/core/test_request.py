"""`Request.__init__` is written out (the compiled core compiles it, not a dataclass's): it must
still start every field where the field's declaration says."""

from __future__ import annotations

import dataclasses
import math

from servesim.core.request import Request


def test_a_new_request_holds_every_fields_declared_default():
    request = Request(7, 1.5, 10, 5)
    assert (request.request_id, request.arrival_time, request.num_prompt_tokens,
            request.num_output_tokens) == (7, 1.5, 10, 5)
    for f in dataclasses.fields(Request):
        if f.default is dataclasses.MISSING:  # the four given above
            continue
        value = getattr(request, f.name)
        same = (math.isnan(value) and math.isnan(f.default)) if isinstance(f.default, float) \
            and math.isnan(f.default) else value == f.default and type(value) is type(f.default)
        assert same, (f.name, value, f.default)
