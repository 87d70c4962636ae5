"""The plan review: the proposed DAG, waiting for the operator (``plan_approval: required``).

It opens by itself when a run awaits plan approval: the plan a planner wrote
before the run starts, or a replan an agent proposed mid-run. `a` approves,
`r` rejects (a run that has not started ends rejected; a proposed replan is
dropped and the run goes on), `e` opens the plan in ``$VISUAL``/``$EDITOR``
(the file is re-validated on save; problems are shown here and written at
the top of the file for the next edit), `esc` defers (`P` reopens).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import ModalScreen
from textual.widgets import Static

from core import PlanError
from tui.dashboard.dialogs.prompts import PromptScreen
from tui.text.literal import literal


def plan_outline(steps: list[dict[str, Any]], default_agent: str | None = None) -> Text:
    """The proposed steps as a readable DAG: one line each, with its agent and what it waits for."""
    text = Text()
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        text.append(f"{i + 1:>3}. ", "dim")
        text.append_text(literal(str(step.get("key", "?")), "bold"))
        text.append("  ")
        text.append_text(literal(str(step.get("type", "reasoning")), "dim"))
        agent = step.get("agent") or default_agent
        if agent:
            text.append(" on ")
            text.append_text(literal(str(agent), "italic"))
        if step.get("approval") == "required":
            text.append("  ⏸ gate", "note")
        text.append("\n")
        if step.get("title"):
            text.append("       ")
            text.append_text(literal(str(step["title"])))
            text.append("\n")
        deps = step.get("depends_on") or []
        if deps:
            text.append("       after ", "dim")
            text.append_text(literal(", ".join(str(d) for d in deps), "key"))
            text.append("\n")
    return text or Text("no steps", style="dim")


def editor_argv(path: str) -> list[str]:
    """``$VISUAL`` or ``$EDITOR`` (may carry arguments, e.g. ``code --wait``), else vi; never a shell."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return [*shlex.split(editor), path]


class PlanReviewScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve", id="plan-approve", tooltip="Approve the plan: it runs as shown"),
        Binding(
            "r",
            "reject",
            "Reject",
            id="plan-reject",
            tooltip="Reject: a run that has not started ends rejected; a proposed replan is dropped",
        ),
        Binding("e", "edit", "Edit", id="plan-edit", tooltip="Open the plan in $EDITOR; it is re-validated on save"),
        Binding("escape", "defer", "Defer", id="plan-defer", tooltip="Close; the plan keeps waiting (P reopens)"),
    ]

    @dataclass
    class Decided(Message):
        """The operator decided; the run screen calls the core API."""

        approve: bool
        reason: str | None = None
        plan: Any = None  # an edited whole plan (a run that has not started)
        steps: Any = None  # edited steps (a proposed replan)

    def __init__(
        self,
        owner: MessagePump,
        run_id: str,
        snapshot: dict[str, Any],
        read_only: bool = False,
        on_defer: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.owner = owner
        self.run_id = run_id
        self.read_only = read_only
        self.on_defer = on_defer
        self.proposal: dict[str, Any] | None = snapshot.get("proposal")
        # what the operator reviews and may edit: the whole plan, or the proposed replan's steps
        from core import Plan, readable  # (here: a dashboard that reviews no plan never loads pydantic's models)

        self.document: dict[str, Any] = (
            {"mode": self.proposal["mode"], "steps": self.proposal["steps"]}
            if self.proposal
            else readable(Plan.model_validate(snapshot["plan"]))  # stored validated; shown without the defaults
        )
        self.edited = False
        self._draft: str | None = None  # the last edit that did not validate, with its problems on top

    def compose(self) -> ComposeResult:
        with Vertical(id="plan-dialog"):
            yield Static(id="plan-title")
            with VerticalScroll(id="plan-steps"):
                yield Static(id="plan-outline")
            yield Static(id="plan-error")
            yield Static(id="plan-keys")

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        if self.proposal:
            title = Text.assemble(
                "Step ",
                literal(self.proposal["by"], "bold"),
                " proposes a replan (",
                literal(self.proposal["mode"]),
                ") of run ",
                self.run_id,
            )
        else:
            title = Text.assemble(
                "Review the plan of run ", (self.run_id, "bold"), ": ", literal(str(self.document.get("goal") or ""))
            )
        if self.edited:
            title.append("  (edited)", "note")
        self.query_one("#plan-title", Static).update(title)
        self.query_one("#plan-outline", Static).update(
            plan_outline(self.document.get("steps") or [], self._default_agent())
        )
        keys = "a approve   r reject   e edit in $EDITOR   esc defer"
        self.query_one("#plan-keys", Static).update(Text("read-only: esc closes" if self.read_only else keys))

    def _default_agent(self) -> str | None:
        """The agent a step naming none runs on.

        A whole plan only; a replan's steps name theirs or the run's default.
        """
        agents = self.document.get("agents") or {}
        return self.document.get("default_agent") or (next(iter(agents)) if len(agents) == 1 else None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action in ("approve", "reject", "edit"))

    def action_approve(self) -> None:
        if not self.edited:
            self.owner.post_message(self.Decided(True))
        elif self.proposal:
            self.owner.post_message(self.Decided(True, "edited in the dashboard", steps=self.document["steps"]))
        else:
            self.owner.post_message(self.Decided(True, "edited in the dashboard", plan=self.document))

    def action_reject(self) -> None:
        what = "the replan (the run goes on without it)" if self.proposal else "the plan (the run ends rejected)"

        def done(reason: str | None) -> None:
            if reason is not None:
                self.owner.post_message(self.Decided(False, reason or None))

        self.app.push_screen(PromptScreen(f"Reject {what}? Reason (optional):", "why not"), done)

    def action_defer(self) -> None:
        if self.on_defer is not None:
            self.on_defer()
        self.dismiss(None)

    def action_edit(self) -> None:
        import yaml

        text = self._draft or yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True, width=100)
        with tempfile.NamedTemporaryFile(
            "w", suffix=".yaml", prefix=f"loopdeck-{self.run_id}-", delete=False, encoding="utf-8"
        ) as fh:
            fh.write(text)
            path = fh.name
        try:
            code = self._run_editor(path)
            edited = Path(path).read_text(encoding="utf-8")
        finally:
            Path(path).unlink(missing_ok=True)
        if code != 0:
            self._problem(f"the editor exited with code {code}; the plan is unchanged")
            return
        self._take_edit(edited)

    def _run_editor(self, path: str) -> int:
        argv = editor_argv(path)
        try:
            with self.app.suspend():
                return subprocess.run(argv, check=False).returncode
        except SuspendNotSupported:  # no terminal to hand over (tests, web): run it as it is
            return subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True).returncode
        except OSError as exc:
            self._problem(f"cannot start the editor {argv[0]!r}: {exc}; set $EDITOR")
            return -1

    def _take_edit(self, text: str) -> None:
        """Re-validate what was saved: keep it if valid; otherwise show the problems and keep the draft."""
        import yaml

        from core import validate_plan

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            self._reject_draft(text, [f"not valid YAML: {exc}"])
            return
        if self.proposal:  # the steps are checked against the live run when the replan is approved
            if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
                self._reject_draft(text, ["keep the mapping with `steps:` (a list of steps)"])
                return
            data = {"mode": self.proposal["mode"], "steps": data["steps"]}
        else:
            try:
                validate_plan(data, source="the edited plan")
            except PlanError as exc:
                self._reject_draft(text, [str(i) for i in exc.issues])
                return
        self.query_one("#plan-error", Static).update("")
        self._draft = None
        if data == self.document:
            self.notify("the plan is unchanged", markup=False)
            return
        self.document, self.edited = data, True
        self.show()

    def _reject_draft(self, text: str, problems: list[str]) -> None:
        body = "\n".join(line for line in text.splitlines() if not line.startswith("# problem: "))
        self._draft = "".join(f"# problem: {p}\n" for p in problems) + body + "\n"
        self._problem("the edit is not a valid plan (press e to fix it):\n" + "\n".join(f"  - {p}" for p in problems))

    def _problem(self, message: str) -> None:
        self.query_one("#plan-error", Static).update(literal(message, "error"))
