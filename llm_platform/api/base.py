"""The base class every LLMJob spec model derives from.

Specs are strict: an unknown field is an error (a typo such as `learning_rate` for `lr` must not be silently ignored),
and values are validated when assigned, so code that edits a spec cannot make it invalid behind the validator's back.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
