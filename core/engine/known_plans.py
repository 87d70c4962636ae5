"""Plans this process validated and stored, kept for the driver of their run in the same process.

A driver validates the plan stored with its run again before it drives (the
run may come from another process, or from an older loopdeck with looser
limits): decoding and validating a 10,000-step plan's 3 MB of JSON holds the
event loop for some 100 ms. A run created and driven by the same process
(``loopdeck run``, ``create_run`` then ``drive``, a sub_agent step's child run) stores
a plan this process has just validated: ``create_run`` remembers it with its
text, and ``RunController.load`` takes it back when the stored text is still
that text and the plan still serializes to it (a pydantic model can be changed
in place after ``validate_plan`` returned it, out of any check): one JSON
encode (~6 ms at 10,000 steps) instead of a decode and a validation. Anything
else, and every run read from another process, is validated as before.

The driver then holds the very object given to ``create_run`` (the engine never changes a plan in place:
a replan or a rule replaces it): a caller that changes it while its run is driven changes that run. Its
``model_fields_set`` are its author's, where a plan read back has every field set; nothing the engine
does depends on them (``child_plan_data`` reads them, with the same child plan either way: tested).
"""

from __future__ import annotations

from core.model.plan import Plan, vouched


class KnownPlans:
    """The plans of the last few runs this process created, each with the text it stored."""

    KEPT = 4  # (runs are created and then driven: the newest ones are the ones asked for)

    def __init__(self) -> None:
        self._by_run: dict[str, tuple[str, Plan]] = {}

    def remember(self, run_id: str, text: str, plan: Plan) -> None:
        """``plan`` was stored as ``text`` for ``run_id``: kept only if ``validate_plan`` vouches for it."""
        if not vouched(plan, text):
            return
        self._by_run[run_id] = (text, plan)
        while len(self._by_run) > self.KEPT:
            del self._by_run[next(iter(self._by_run))]

    def recall(self, run_id: str, text: str) -> Plan | None:
        """The plan remembered for ``run_id`` if the store still has the text it was stored as and the plan
        still serializes to it; else None (validate the text)."""
        known = self._by_run.get(run_id)
        if known is None or known[0] != text or known[1].model_dump_json() != text:
            return None
        return known[1]
