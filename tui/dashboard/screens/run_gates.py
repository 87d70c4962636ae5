"""The run screen's gates: the approval dialog and the plan review, opened by themselves, answered through the engine.

A mixin of ``RunScreen`` (its view, its run id, its context): approvals
waiting open the dialog (queued, several at once), a plan awaiting review
opens the review; an operator who defers one is not asked again until `A` or
`P`; a gate answered elsewhere leaves the dialog. The gates of its child runs
(sub_agent steps) queue in the same dialog, as ``CHILD/KEY`` (a step key
never holds a slash), read from the store about once a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

from textual import work
from textual.screen import ModalScreen

from core import BadInput, LoopdeckError
from tui.dashboard.dialogs.approval import CALL, ApprovalScreen, split_child
from tui.dashboard.dialogs.plan_review import PlanReviewScreen
from tui.dashboard.viewmodel import RunView


class GatesMixin:
    """Needs: ``view``, ``run_id``, ``ctx``, ``_act`` (and a Textual screen's ``app``, ``notify``)."""

    view: RunView | None
    run_id: str
    _deferred: set[str]
    _answered: set[str]
    _plan_deferred: bool
    _plan_review_opening: bool
    child_views: dict[str, RunView]

    def _sync_plan_review(self, view: RunView) -> None:
        """Open the plan review when the run awaits plan approval; close it once decided (here or elsewhere)."""
        review = next((s for s in self.app.screen_stack if isinstance(s, PlanReviewScreen)), None)
        awaiting = view.status == "awaiting_plan_approval"
        if review is not None and not awaiting:
            if self.app.screen is review:
                review.dismiss(None)
            return
        if not awaiting:
            self._plan_deferred = False
        elif review is None and not self._plan_deferred and self.app.screen is self and not self._plan_review_opening:
            self.open_plan_review()

    @work(group="plan-review", exit_on_error=False, name="the plan review")
    async def open_plan_review(self) -> None:
        self._plan_review_opening = True
        try:
            snap = await self.ctx.orch.snapshot(self.run_id, events=False, spans=False)
        except LoopdeckError as exc:
            self.notify(f"cannot read the plan: {exc}", severity="error", markup=False)
            return
        finally:
            self._plan_review_opening = False
        if snap["run"]["status"] != "awaiting_plan_approval":
            self.notify("no plan is waiting for approval", markup=False)
            return
        try:
            review = PlanReviewScreen(self, self.run_id, snap, self.ctx.read_only, self._defer_plan)
        except ValueError as exc:  # (pydantic's ValidationError) a damaged stored plan: said once, not reopened
            self._plan_deferred = True
            first = str(exc).splitlines()[0]
            self.notify(
                f"cannot review the plan of run {self.run_id}: its stored plan is damaged ({first}); "
                f"`loopdeck cancel {self.run_id}` ends the run",
                severity="error",
                markup=False,
                timeout=30,
            )
            return
        await self.app.push_screen(review)

    def _defer_plan(self) -> None:
        self._plan_deferred = True
        self.notify("plan review deferred; press P to reopen", markup=False)

    def action_open_plan_review(self) -> None:
        self._plan_deferred = False
        if not isinstance(self.app.screen, PlanReviewScreen):
            self.open_plan_review()

    def on_plan_review_screen_decided(self, message: PlanReviewScreen.Decided) -> None:
        """A conventional handler name: Textual's ``@on`` is not collected from a mixin."""
        review = self.app.screen if isinstance(self.app.screen, PlanReviewScreen) else None
        self.decide_plan(message, review)

    @work(group="actions", exit_on_error=False, name="an action")
    async def decide_plan(self, decision: PlanReviewScreen.Decided, review: PlanReviewScreen | None) -> None:
        """Decide, then close the review the decision was made in, never one opened meanwhile: an agent's
        replan, proposed as soon as its plan was approved, would be closed unseen."""
        orch, user = self.ctx.orch, self.ctx.user
        verb = "approved" if decision.approve else "rejected"
        edited = " (edited)" if decision.plan is not None or decision.steps is not None else ""
        done = await self._act(
            orch.approve_plan(
                self.run_id,
                approve=decision.approve,
                user=user,
                reason=decision.reason,
                plan=decision.plan,
                steps=decision.steps,
            ),
            f"plan {verb}{edited} by {user}",
        )
        if done and review is not None and self.app.screen is review:
            review.dismiss(None)

    @work(group="children", exclusive=True, exit_on_error=False, name="the child runs' gates")
    async def watch_children(self) -> None:
        """Keep ``child_views``: every child run (and theirs) with a gate waiting."""
        while True:
            found: dict[str, RunView] = {}
            parents = [self.run_id]
            try:
                while parents:
                    for child in await self.ctx.orch.children(parents.pop()):
                        if child["status"] in ("waiting_user", "running", "planning", "awaiting_plan_approval"):
                            parents.append(child["id"])  # (its own children may wait)
                        if child["status"] in ("waiting_user", "running"):  # (a tool call waits in a running run)
                            found[child["id"]] = await self._child_view(child["id"])
            except LoopdeckError:
                pass  # said by the feed, which reads the same store; tried again in a second
            else:
                self.child_views = found
            await asyncio.sleep(CHILD_POLL_S)

    async def _child_view(self, child: str) -> RunView:
        """A child run as its events tell it: the view kept from the last look, with the events since; read
        whole the first time, and again after a replan changed its steps. (Read whole every second, a
        20,000-step child cost its parent's screen 0.7 s of each second.)"""
        view = self.child_views.get(child)
        if view is None or view.structure_changed:
            return RunView.from_snapshot(*await self.ctx.orch.snapshot_and_events(child))
        while events := await self.ctx.orch.events_since(child, view.last_event_id):
            for event in events:
                view.apply(event)
        view.dirty.clear()  # (nothing draws a child's steps here)
        return view

    def _pending(self, view: RunView) -> list[str]:
        """What the dialog queues: this run's gates, then its child runs' (``CHILD/KEY``)."""
        own = pending(view)
        for child, cview in self.child_views.items():
            own += [
                CALL + f"{child}/" + k.removeprefix(CALL) if k.startswith(CALL) else f"{child}/{k}"
                for k in pending(cview)
            ]
        return own

    def _unanswered(self, view: RunView) -> list[str]:
        """``_pending``, less the gates answered here that the view still shows waiting (not caught up yet)."""
        waiting = self._pending(view)
        self._answered.intersection_update(waiting)
        return [key for key in waiting if key not in self._answered]

    def _on_top(self) -> bool:
        """This run is the one the operator sees (a child run opened over it has its own dialogs)."""
        below_modals = next((s for s in reversed(self.app.screen_stack) if not isinstance(s, ModalScreen)), None)
        return below_modals is self

    def _sync_approvals(self, view: RunView) -> None:
        if not self._on_top():
            return
        self._sync_plan_review(view)
        waiting = self._unanswered(view)
        modal = self.app.screen if isinstance(self.app.screen, ApprovalScreen) else None
        if modal is not None and modal.owner is self:
            modal.drop([key for key in modal.queue if key not in waiting])  # answered elsewhere, or gone
            new = [k for k in waiting if k not in modal.queue and k not in self._deferred]
            if new and modal.is_current:
                modal.add(new)
            return
        if modal is not None:
            return
        fresh = [k for k in waiting if k not in self._deferred]
        if fresh and self.app.screen is self:
            self.app.push_screen(self._approval_screen(view, fresh))

    def _approval_screen(self, view: RunView, queue: list[str]) -> ApprovalScreen:
        steps, calls = Gates(self, "steps"), Gates(self, "calls")
        return ApprovalScreen(self, self.run_id, queue, steps, self.ctx.read_only, self.defer, calls, self.gate_context)

    async def gate_context(self, key: str) -> Any:
        """The context of a queued gate's step (a tool call's: its step's), read from its run."""
        if key.startswith(CALL):
            child, _call_id = split_child(key.removeprefix(CALL))
            call = Gates(self, "calls")[key.removeprefix(CALL)]
            key = f"{child}/{call.step}" if child else call.step
        run_id, step = self._target(key)
        return await self.ctx.orch.step_context(run_id, step)

    def action_open_approvals(self) -> None:
        view = self.view
        waiting = self._unanswered(view) if view is not None else []
        if view is None or not waiting:
            self.notify("no step or tool call is waiting for approval", markup=False)
            return
        self._deferred.clear()
        self.app.push_screen(self._approval_screen(view, waiting))

    def defer(self, keys: list[str]) -> None:
        """The operator closed the approval dialog: its gates stay open and it stays closed until `A`."""
        self._deferred.update(keys)
        self.notify(f"{len(keys)} approval(s) deferred; press A to reopen", markup=False)

    def on_approval_screen_answered(self, message: ApprovalScreen.Answered) -> None:
        self.answer_gate(message.key, message.approve, message.reason, message.input, message.always)

    @work(group="actions", exit_on_error=False, name="an action")
    async def answer_gate(self, key: str, approve: bool, reason: str | None, input: Any, always: bool = False) -> None:
        orch, user = self.ctx.orch, self.ctx.user
        if key.startswith(CALL):
            await self.answer_call(key, approve, reason, input, always)
            return
        run_id, step = self._target(key)
        if approve:
            extra = {} if input is ... else {"input": input}
            child, _ = split_child(key)
            view = self.child_views.get(child) if child else self.view
            held = view.held_note(step) if view is not None else ""
            done = await self._act(
                orch.approve(run_id, step, user=user, reason=reason, **extra),
                f"{key} approved by {user}" + (" with edited input" if extra else "") + held,
            )
        else:
            done = await self._act(orch.reject(run_id, step, user=user, reason=reason), f"{key} rejected by {user}")
        if done:
            self._answered.add(key)  # (never offered again while the view still shows it waiting)
        if isinstance(self.app.screen, ApprovalScreen):
            self.app.screen.advance(key)

    async def answer_call(self, key: str, approve: bool, reason: str | None, arguments: Any, always: bool) -> None:
        """Answer a tool call; edited arguments the tool's schema refuses are shown in the dialog, not sent."""
        orch, user = self.ctx.orch, self.ctx.user
        run_id, call_id = self._target(key.removeprefix(CALL))
        extra = {} if arguments is ... else {"arguments": arguments}
        try:
            await orch.decide_call(run_id, call_id, approve=approve, user=user, reason=reason, always=always, **extra)
        except BadInput as exc:
            if isinstance(self.app.screen, ApprovalScreen):
                self.app.screen.show_error(str(exc))
            else:
                self.notify(str(exc), severity="error", markup=False)
            return
        except LoopdeckError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        verb = "approved" + (" with edited arguments" if extra else "") if approve else "rejected"
        if always:
            verb += "; its tool is allowed for the rest of the run"
        self.notify(f"tool call {call_id} {verb} by {user}", markup=False)
        self._answered.add(key)
        if isinstance(self.app.screen, ApprovalScreen):
            self.app.screen.advance(key)

    def _target(self, key: str) -> tuple[str, str]:
        """The run and step (or call) a queued key answers: ``CHILD/KEY`` is a child run's."""
        child, inner = split_child(key)
        return (child, inner) if child else (self.run_id, key)


CHILD_POLL_S = 1.0  # how often the child runs' gates are looked for


class Gates(Mapping[str, Any]):
    """What the approval dialog looks up, as it is now: the run's steps (or calls) and its child runs'
    (``CHILD/KEY``); a queue grows while the dialog is open, so no copy made when it opened would do."""

    def __init__(self, screen: GatesMixin, kind: str) -> None:
        self.screen, self.kind = screen, kind

    def _views(self) -> list[tuple[str, RunView]]:
        own = [("", self.screen.view)] if self.screen.view is not None else []
        return own + [(f"{child}/", view) for child, view in self.screen.child_views.items()]

    def __getitem__(self, key: str) -> Any:
        child, inner = split_child(key)
        view = self.screen.child_views.get(child) if child else self.screen.view
        if view is None:
            raise KeyError(key)
        return getattr(view, self.kind)[inner]

    def __iter__(self) -> Iterator[str]:
        return iter([prefix + key for prefix, view in self._views() for key in getattr(view, self.kind)])

    def __len__(self) -> int:
        return sum(len(getattr(view, self.kind)) for _, view in self._views())


def pending(view: RunView) -> list[str]:
    """What the approval dialog queues: waiting steps, then waiting tool calls (``call:ID``)."""
    return [*view.waiting, *(CALL + call_id for call_id in view.waiting_calls)]
