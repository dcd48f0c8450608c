"""Request/response schemas shared by the routers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Requests everywhere but the SOS: unknown fields and NaN/Infinity are 422s."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=4096)
