"""Transition errors name the step, its status and the action; database URLs resolve sensibly."""

from __future__ import annotations

import pytest

from core import TransitionError
from core.config import ENV_DB, resolve_db_url
from core.model.states import StepStatus, check_step


def test_an_illegal_transition_names_step_status_and_action():
    with pytest.raises(TransitionError) as info:
        check_step("publish", StepStatus.SUCCEEDED, "approve")
    assert str(info.value) == 'step "publish" is succeeded; only a waiting_user step can be approved'
    assert check_step("publish", StepStatus.WAITING_USER, "approve") == StepStatus.PENDING


def test_db_url_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_DB, raising=False)
    assert resolve_db_url(None).startswith("sqlite+aiosqlite:///") and resolve_db_url(None).endswith("loopdeck.db")
    assert resolve_db_url(str(tmp_path / "x.db")) == f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv(ENV_DB, "sqlite:////var/tmp/y.db")
    assert resolve_db_url(None) == "sqlite+aiosqlite:////var/tmp/y.db"
    assert resolve_db_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"  # --db wins over the environment
