"""The run screen's operator actions: each through the engine's API, each saying how it went.

A mixin of ``RunScreen``. Actions the run's state makes impossible are
refused by the engine with a message that says why; nothing here writes the
store, and read-only mode disables every action that would change the run.
"""

from __future__ import annotations

from typing import Any

from textual import work

from core import BadInput, LoopdeckError, parse_cost_budget, parse_token_budget
from tui.dashboard import heap
from tui.dashboard.actions import RUN_ACTIONS, ActionSpec
from tui.dashboard.dialogs.events import EventsScreen
from tui.dashboard.dialogs.help import MODAL_KEYS, HelpScreen
from tui.dashboard.dialogs.prompts import ConfirmScreen, PromptScreen, ask_cancel
from tui.dashboard.messages import DriveRun, OpenRun, ShowRuns
from tui.dashboard.viewmodel import RunView
from tui.dashboard.widgets.dag_tree import DagTree
from tui.dashboard.widgets.event_log import EventLog
from tui.text.money import budget_text, dollars

SKIPPABLE = ("pending", "waiting_user")  # the engine's rule (core.model.states: skip), checked before asking


def parse_budget(value: str) -> tuple[float | None, bool]:
    """The command line's rules (`loopdeck budget --set N`, `--usd DOLLARS`): ``$5`` is a cost budget."""
    usd = value.strip().startswith("$")
    return (parse_cost_budget(value) if usd else parse_token_budget(value, "a token budget")), usd


def budget_problem(value: str) -> str | None:
    try:
        parse_budget(value)
    except BadInput as exc:
        return str(exc)
    return None


class ActionsMixin:
    """Needs: ``view``, ``run_id``, ``ctx``, ``frozen``, ``filter_text``, ``render_view``, ``_pending``, ``_act``."""

    view: RunView | None
    run_id: str
    frozen: bool
    follow_active: bool
    filter_text: str

    def can(self, spec: ActionSpec) -> bool | None:
        """A, P and R are offered only when there is something to answer, review or drive (the others say why
        they are refused, so they stay)."""
        view = self.view
        if view is None:
            return spec.id not in ("resume", "approvals", "plan_review")
        if spec.id == "resume":
            return view.driver_gone is not None and not view.finished
        if spec.id == "approvals":
            return bool(self._pending(view))
        if spec.id == "plan_review":
            return view.status == "awaiting_plan_approval"
        return True

    def action_resume_run(self) -> None:
        view = self.view
        if view is None or view.driver_gone is None or view.finished:
            self.notify(f"run {self.run_id} is driven already or has ended; nothing to resume", markup=False)
            return
        self.post_message(DriveRun(self.run_id))
        view.set_driver({"state": "alive"})  # (taken at once: the next check says so from the store)
        self.refresh_bindings()

    def action_open_events(self) -> None:
        events = [e for e in self.view.events if e.type != "step_output_partial"] if self.view is not None else []
        self.app.push_screen(EventsScreen(events))  # (streamed pieces are in the Output tab)

    def action_runs(self) -> None:
        """Back: to the run this child run was opened from, else the runs list (the app knows which is below)."""
        self.post_message(ShowRuns())

    async def action_open_child(self) -> None:
        """enter: a sub-agent step opens its child run; on any other step, the tree's own enter."""
        tree = self.query_one(DagTree)
        key = tree.highlighted_key
        step = self.view.steps.get(key) if self.view is not None and key else None
        if step is None or step.type != "sub_agent":
            tree.action_select_cursor()
            return
        try:
            children = [c for c in await self.ctx.orch.children(self.run_id) if c["step"] == key]
        except LoopdeckError as exc:
            self.notify(f"cannot read the child runs: {exc}", severity="error", markup=False)
            return
        if not children:
            self.notify(f'step "{key}" has no child run yet (it starts one when it runs)', markup=False)
            return
        self.post_message(OpenRun(children[-1]["id"]))

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(RUN_ACTIONS, MODAL_KEYS))

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.notify("live updates frozen (space resumes)" if self.frozen else "live updates resumed", markup=False)
        self.render_view()  # (frozen: the badge at once; resumed: what came meanwhile)

    def action_follow_active(self) -> None:
        self.follow_active = not self.follow_active
        self._title_tree()
        self.notify("the cursor follows the running steps" if self.follow_active else "stopped following", markup=False)

    def _title_tree(self) -> None:
        """The tree's title says what shapes it: a filter, following the active steps."""
        notes = [f"filter: {self.filter_text}"] if self.filter_text else []
        notes += ["following the active ones (F stops)"] if self.follow_active else []
        self.query_one(DagTree).border_title = " · ".join(["steps", *notes])

    def action_filter(self) -> None:
        def answer(value: str | None) -> None:
            if value is None or self.view is None:
                return
            self.filter_text = value.strip()
            tree = self.query_one(DagTree)
            with heap.building(rebuilding=True, kept=lambda: self.is_mounted):  # (the tree it replaces collected)
                tree.build(self.view, self.ctx.clock(), self.filter_text)
            self._title_tree()
            shown = len(tree.root.children)
            if self.filter_text:
                self.notify(
                    f"{shown} step(s) match {self.filter_text!r}; / then enter on an empty line clears", markup=False
                )

        self.app.push_screen(
            PromptScreen(
                "Filter steps by key, status or agent (empty: all):", "e.g. failed, writer, review", self.filter_text
            ),
            answer,
        )

    def action_skip_step(self) -> None:
        key = self.query_one(DagTree).highlighted_key
        if key is None:
            self.notify("highlight a step first", markup=False)
            return
        step = self.view.steps.get(key) if self.view is not None else None
        if step is not None and step.status not in SKIPPABLE:  # refused at once: no confirmation to say no to
            self.notify(
                f'step "{key}" is {step.status}; only a pending or waiting_user step can be skipped', markup=False
            )
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.skip_step(key)

        self.app.push_screen(
            ConfirmScreen(f"Skip step {key}? It will not run; steps that need it are skipped too."), answer
        )

    @work(group="actions", exit_on_error=False, name="an action")
    async def skip_step(self, key: str) -> None:
        await self._act(
            self.ctx.orch.skip(self.run_id, key, user=self.ctx.user, reason="skipped from the dashboard"),
            f"{key} skipped",
        )

    def action_retry_step(self) -> None:
        key = self.query_one(DagTree).highlighted_key
        if key is None:
            self.notify("highlight a step first", markup=False)
            return
        self.retry_step(key)

    @work(group="actions", exit_on_error=False, name="an action")
    async def retry_step(self, key: str) -> None:
        held = self.view.held_note(key) if self.view is not None else ""
        await self._act(self.ctx.orch.retry(self.run_id, key, user=self.ctx.user), f"{key} gets one more attempt{held}")

    def action_follow_log(self) -> None:
        self.query_one(EventLog).follow()

    async def action_feedback(self, rating: str) -> None:
        key = self.query_one(DagTree).highlighted_key
        if key is None:
            self.notify("highlight a step first", markup=False)
            return

        def send(comment: str | None) -> None:
            if comment is not None:
                self.send_feedback(key, rating, comment or None)

        thumb = "👍" if rating == "up" else "👎"
        self.app.push_screen(PromptScreen(f"{thumb} for {key} — comment (optional):", "what was good or bad"), send)

    @work(group="actions", exit_on_error=False, name="an action")
    async def send_feedback(self, key: str, rating: str, comment: str | None) -> None:
        await self._act(
            self.ctx.orch.feedback(self.run_id, key, rating, comment=comment, user=self.ctx.user),
            f"{'👍' if rating == 'up' else '👎'} recorded for {key}",
        )

    def action_cancel_run(self) -> None:
        view = self.view
        if view is not None and view.finished:
            self.notify(f"run {self.run_id} is {view.status}; an ended run can no longer be canceled", markup=False)
            return

        ask_cancel(self.app, self.run_id, self.cancel_run)

    @work(group="actions", exit_on_error=False, name="an action")
    async def cancel_run(self, reason: str) -> None:
        await self._act(
            self.ctx.orch.cancel(self.run_id, user=self.ctx.user, reason=reason), f"run {self.run_id} canceled"
        )

    def action_finish_run(self) -> None:
        view = self.view
        if view is not None and view.finished:
            self.notify(f"run {self.run_id} is {view.status}; an ended run can no longer be finished", markup=False)
            return

        def answer(text: str | None) -> None:
            if text is not None:  # Esc: not finished
                self.finish_run(text)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.push_screen(
                    PromptScreen("Final answer (empty: what the run's final steps produced):", "the run's answer"),
                    answer,
                )

        self.app.push_screen(
            ConfirmScreen(
                f"Finish run {self.run_id} now? Running steps are canceled, the rest skipped; it ends succeeded."
            ),
            confirmed,
        )

    @work(group="actions", exit_on_error=False, name="an action")
    async def finish_run(self, text: str) -> None:
        extra: dict[str, Any] = {"answer": text} if text.strip() else {}
        await self._act(
            self.ctx.orch.finish(self.run_id, user=self.ctx.user, reason="finished from the dashboard", **extra),
            f"run {self.run_id} finished",
        )

    def action_raise_budget(self) -> None:
        current = self.view.budget if self.view else None

        def answer(value: str | None) -> None:
            if value is None:
                return
            limit, usd = parse_budget(value)
            below = self._below_use(limit, usd)
            if below is None:
                self.set_budget(limit, usd)
                return
            self.app.push_screen(
                ConfirmScreen(below + " Set it?"), lambda yes: self.set_budget(limit, usd) if yes else None
            )

        self.app.push_screen(
            PromptScreen(
                "Token budget (a number or 'none'; $5 sets the cost budget):",
                "e.g. 100000 or $5",
                "" if current is None else str(current),
                check=budget_problem,
            ),
            answer,
        )

    def _below_use(self, limit: float | None, usd: bool) -> str | None:
        """What a budget below what the run has used already will do (None when it is not below)."""
        view = self.view
        if view is None or limit is None or view.finished:
            return None
        used = view.cost_usd if usd else view.tokens
        if limit >= used:
            return None
        then = "the run fails" if view.on_budget_exhausted == "fail" else "the run pauses until the budget is raised"
        spent = dollars(used) if usd else f"{used:,} tokens"
        return (
            f"The run has used {spent} already; a budget of {budget_text(limit, usd)} is below that: "
            f"no step starts again, and once the running ones end {then} (on_budget_exhausted)."
        )

    @work(group="actions", exit_on_error=False, name="an action")
    async def set_budget(self, limit: float | None, usd: bool = False) -> None:
        await self._act(
            self.ctx.orch.set_budget(self.run_id, limit, usd=usd, user=self.ctx.user),
            f"{'cost' if usd else 'token'} budget set to {budget_text(limit, usd)}",
        )
