"""Transition errors name the step, its status and the action; database URLs resolve sensibly; event stamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import TransitionError
from core.config import ENV_DB, resolve_db_url
from core.model.events import iso
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


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=-2e9, max_value=4e9, allow_nan=False),
        st.integers(0, 10**7).map(lambda k: 1_764_590_000 + k / 1e6 + 0.5e-6),  # halfway between microseconds
        st.integers(-(10**6), 10**6).map(lambda k: k / 1e6 - 0.4999e-6),
    )
)
def test_an_event_stamp_is_written_as_datetime_writes_it(ts):
    """``iso`` makes each second's date once; what it writes is datetime's, rounding included."""
    assert iso(ts) == datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def test_an_event_stamp_of_no_time_is_none_and_seconds_apart_differ():
    assert iso(None) is None
    assert iso(1_764_590_000.9999996) == "2025-12-01T11:53:21.000000+00:00"
    assert iso(1_764_590_001.25) == "2025-12-01T11:53:21.250000+00:00"
    assert iso(-0.5) == "1969-12-31T23:59:59.500000+00:00"
