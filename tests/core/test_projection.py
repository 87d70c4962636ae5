"""The fold of a run's events (core/model/projection.py): step counts kept as events move the steps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.model.events import STEP_STATUS_AFTER, Event, EventType
from core.model.projection import FINISHED, RunProjection, StepProjection

KEYS = [f"s{i}" for i in range(8)]
STATUSES = sorted(set(STEP_STATUS_AFTER.values()))
MOVES = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(sorted(STEP_STATUS_AFTER)), st.sampled_from(KEYS)),
    st.tuples(
        st.just("replan"), st.lists(st.sampled_from(KEYS), max_size=3), st.lists(st.sampled_from(KEYS), max_size=3)
    ),
    st.tuples(st.just("added"), st.sampled_from(KEYS), st.sampled_from(STATUSES)),  # as a snapshot fills steps
)


@settings(max_examples=300, deadline=None)
@given(st.lists(MOVES, max_size=40))
def test_counts_and_keys_by_status_are_those_of_the_steps_after_any_events(moves):
    run = RunProjection("r", steps={k: StepProjection(k) for k in KEYS[:4]})
    for i, move in enumerate(moves, start=1):
        if move[0] == "event":
            run.apply(Event(i, "r", move[1], move[2], {}, float(i)))
        elif move[0] == "replan":
            run.apply(Event(i, "r", EventType.RUN_REPLANNED, None, {"removed": move[1], "added": move[2]}, float(i)))
        elif move[1] not in run.steps:
            run.steps[move[1]] = StepProjection(move[1], status=move[2])
        for status in STATUSES:
            assert run.count(status) == sum(1 for s in run.steps.values() if s.status == status)
            assert run.keys_in(status) == {k for k, s in run.steps.items() if s.status == status}
        assert run.done == sum(1 for s in run.steps.values() if s.status in FINISHED)
