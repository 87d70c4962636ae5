"""loopdeck's settings from the environment: one validated model for every ``LOOPDECK_*`` variable.

Read when a command needs them, never at import, so a bad value cannot stop
``--help``; a bad value is a ``BadInput`` that names the variable, what it
holds and what it must be. (pydantic-settings does the reading: one model,
each field documented, instead of ``os.environ`` lookups scattered around.)
"""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import BadInput
from core.limits import MAX_TOKENS

PREFIX = "LOOPDECK_"


class EnvSettings(BaseSettings):
    """Every ``LOOPDECK_*`` environment variable loopdeck reads."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore")

    db: str | None = Field(None, description="database URL or SQLite file path (``--db`` wins)")
    token_budget: int | None = Field(None, ge=0, le=MAX_TOKENS, description="budget of runs whose plan sets none")
    lease_s: float = Field(15.0, ge=0.5, le=3600, description="seconds a run's lease lasts unless renewed")
    agents: str | None = Field(None, description="the planner's agents file, when --agents is not given")
    # LOOPDECK_DEBUG is read by the front ends themselves: an error report must work even when a setting here is bad


def env_settings() -> EnvSettings:
    """The environment's settings, validated now (they are cheap to read and tests change them)."""
    try:
        return EnvSettings()
    except ValidationError as exc:
        raise BadInput(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        name = PREFIX + str(err["loc"][0]).upper() if err["loc"] else "a LOOPDECK_ variable"
        problems.append(f"{name}={err.get('input')!r} is not valid: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)
