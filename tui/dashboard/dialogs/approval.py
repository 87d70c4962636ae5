"""The approval modal: opens by itself when a step or a tool call waits; queues several.

`a` approves, `A` approves the whole queue (after a confirmation), `r`
rejects (asking for an optional reason; a tool call's goes to the model), `e`
edits the input (a tool call's arguments) as JSON, refused in place while it
does not parse or, for a call, while the tool's schema refuses it; ctrl+s
approves with the edit; `c` shows the step's context (the outputs it depends
on) instead of its input, and back; `esc` defers: the gate stays open and `A`
reopens the queue. A tool call is queued as ``call:ID`` (its own id: two
waiting calls of parallel steps never mix).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from core import BadInput, CallProjection, LoopdeckError, parse_json
from tui.dashboard.dialogs.prompts import ConfirmScreen, PromptScreen
from tui.dashboard.viewmodel import parse_iso
from tui.dashboard.widgets.header_bar import elapsed_text
from tui.dashboard.widgets.schema_form import FormError, SchemaForm
from tui.dashboard.widgets.step_detail import as_json, context_text
from tui.text.literal import literal

CALL = "call:"  # a queued tool call (step keys never hold a colon)


def split_child(key: str) -> tuple[str, str]:
    """``CHILD/KEY`` (a child run's gate, queued in its parent's dialog) as (CHILD, KEY); ("", KEY) for the run's
    own (neither run ids nor step keys nor call ids hold a slash)."""
    child, _, inner = key.rpartition("/")
    return child, inner


def _time_left(deadline: str | None) -> Text:
    """``times out in 00:42 (at 16:12:05 UTC)``: what an approval deadline leaves the operator."""
    at = parse_iso(deadline)
    if at is None:
        return Text()
    clock = time.strftime("%H:%M:%S", time.gmtime(at))
    return Text(f"\ntimes out in {elapsed_text(at - time.time())} (at {clock} UTC)", style="badge.deadline")


def _why(gated: str | None) -> str:
    if gated is None or gated == "approval: required":
        return "the plan marks it `approval: required`"
    return f"approval_rules: {gated}"


_PARTS = (
    "#approval-title",
    "#approval-why",
    "#approval-input",
    "#approval-input-view",
    "#approval-editor",
    "#approval-error",
    "#approval-keys",
)


class ApprovalScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve", id="approval-approve", tooltip="Approve: the step runs with this input"),
        Binding("A", "approve_all", "Approve all", id="approval-approve-all", tooltip="Approve the whole queue"),
        Binding("c", "toggle_context", "Context", id="approval-context", tooltip="Its context, or its input"),
        Binding(
            "r", "reject", "Reject", id="approval-reject", tooltip="Reject: the step and what needs it are skipped"
        ),
        Binding(
            "e", "edit", "Edit input", id="approval-edit", tooltip="Edit the input as JSON, then approve with ctrl+s"
        ),
        Binding("ctrl+s", "approve_edit", "Approve edit", id="approval-approve-edit", show=False),
        Binding(
            "w",
            "always",
            "Always allow",
            id="approval-always",
            tooltip="Run this call, and allow its tool for the rest of the run",
        ),
        # priority: the JSON editor would otherwise take esc to move the focus, and editing could not be left
        Binding(
            "escape",
            "defer",
            "Defer",
            id="approval-defer",
            tooltip="Close; the gate stays open (A reopens)",
            priority=True,
        ),
    ]

    @dataclass
    class Answered(Message):
        """The operator answered a gate; the run screen calls the core API."""

        key: str
        approve: bool
        reason: str | None = None
        input: Any = ...
        always: bool = False  # a tool call: allow its tool for the rest of the run

    def __init__(
        self,
        owner: MessagePump,
        run_id: str,
        queue: list[str],
        steps: Mapping[str, Any],
        read_only: bool = False,
        on_defer: Callable[[list[str]], None] | None = None,
        calls: Mapping[str, CallProjection] | None = None,
        context: Callable[[str], Awaitable[Any]] | None = None,
    ) -> None:
        super().__init__()
        self.owner = owner  # the run screen: it answers through the core API
        self.on_defer = on_defer  # called at once, so the dialog is not reopened before it hears
        self.run_id = run_id
        self.queue = list(queue)
        self.steps = steps
        self.calls = calls if calls is not None else {}
        self.read_only = read_only
        self.editing = False
        self.context = context  # a queued key's context entries (the run screen reads them from the store)
        self.showing_context = False
        self.shown = False  # its first gate is on screen: until then no key acts on what is not shown yet

    @property
    def current(self) -> str:
        return self.queue[0]

    def compose(self) -> ComposeResult:
        with Vertical(id="approval-dialog"):
            yield Static(id="approval-title")
            yield Static(id="approval-why")
            with VerticalScroll(id="approval-input"):
                yield Static(id="approval-input-view")
            editor = TextArea.code_editor("", language="json", id="approval-editor")
            editor.display = False
            yield editor
            yield Static(id="approval-error")
            yield Static(id="approval-keys")

    def on_mount(self) -> None:
        self._first_show()

    def _first_show(self) -> None:
        if not self.queue:  # every gate it was opened for was answered before it showed
            if self.is_current:
                self.dismiss(None)
            return
        if not all(self.query(part) for part in _PARTS):  # pushed while the screen below was still mounting,
            self.call_after_refresh(self._first_show)  # its widgets came in after its Mount (crashes seen in CI)
            return
        self.show_current()
        self.shown = True
        self.refresh_bindings()

    def show_current(self) -> None:
        if self.current.startswith(CALL):
            self._show_call(self.calls[self.current.removeprefix(CALL)])
            return
        step = self.steps[self.current]
        more = f"  (1 of {len(self.queue)} waiting)" if len(self.queue) > 1 else ""
        self.query_one("#approval-title", Static).update(
            Text.assemble("Approve step ", literal(step.key, "bold"), _of_child(self.current), "?", more)
        )
        self.query_one("#approval-why", Static).update(
            Text.assemble(
                literal(step.title),
                " · ",
                literal(step.type),
                " on ",
                literal(step.agent, "italic"),
                "\nwhy: ",
                literal(_why(step.gated)),
                _time_left(step.deadline),
                style="",
            )
        )
        self._show_body(step.input)
        self._show_keys("a approve  {all}r reject  e edit  c {other}  esc defer")
        self.query_one("#approval-error", Static).update("")

    def _show_keys(self, keys: str) -> None:
        """The key line (fits 80 columns); read-only: only what looks."""
        many = "A all  " if len(self.queue) > 1 else ""
        line = (
            f"read-only: esc closes  c {self._other()}"
            if self.read_only
            else keys.format(all=many, other=self._other())
        )
        self.query_one("#approval-keys", Static).update(Text(line))

    def _other(self) -> str:
        return "input" if self.showing_context else "context"

    def _show_body(self, value: Any) -> None:
        """The input (a call's arguments), or the context when `c` asked for it."""
        box = self.query_one("#approval-input")
        box.border_title = "context: what it depends on" if self.showing_context else "input"
        if self.showing_context:
            self.query_one("#approval-input-view", Static).update(Text("reading…", style="muted"))
            self.load_context(self.current)
        else:
            self.query_one("#approval-input-view", Static).update(as_json(value))

    @work(exclusive=True, group="context", exit_on_error=False, name="the gate's context")
    async def load_context(self, key: str) -> None:
        try:
            shown = context_text(await self.context(key) if self.context is not None else None)
        except (LoopdeckError, KeyError) as exc:  # (KeyError: its child run's gates left the queue meanwhile)
            shown = literal(f"cannot read its context: {exc}", "error")
        if self.showing_context and self.queue and self.current == key:
            self.query_one("#approval-input-view", Static).update(shown)

    def action_toggle_context(self) -> None:
        self.showing_context = not self.showing_context
        self.show_current()

    def _show_call(self, call: CallProjection) -> None:
        more = f"  (1 of {len(self.queue)} waiting)" if len(self.queue) > 1 else ""
        child, _ = split_child(self.current.removeprefix(CALL))
        self.query_one("#approval-title", Static).update(
            Text.assemble("Run tool ", literal(call.tool, "bold"), _of_child(self.current), "?", more)
        )
        step = self.steps.get(f"{child}/{call.step}" if child else call.step)
        hints = ", ".join(name.replace("_", "-") for name, on in sorted(call.annotations.items()) if on) or "none"
        why = Text.assemble(
            "call ",
            literal(call.id, "bold"),
            " of step ",
            literal(call.step, "bold"),
            " on ",
            literal(step.agent if step else "?", "italic"),
            f"\nserver: {call.server or _no_server(call.tool)} · hints: {hints}",
            "\nwhy: ",
            literal(call.rule or "asked"),
            _time_left(call.deadline),
        )
        if call.status == "interrupted":
            why.append("\nit was running when the driving process stopped: did it run? approve runs it again")
        if call.text:
            why.append("\nthe model said: ")
            why.append_text(literal(call.text, "italic"))
        self.query_one("#approval-why", Static).update(why)
        self._show_body(call.arguments)
        self._show_keys("a run it  {all}w always  r refuse  e edit  c {other}  esc defer")
        self.query_one("#approval-error", Static).update("")

    def show_error(self, message: str) -> None:
        """An answer refused (arguments the tool's schema does not accept): said here, the dialog stays."""
        self.query_one("#approval-error", Static).update(Text(f"{message}; fix it or esc"))

    def advance(self, key: str) -> None:
        """A gate was answered (here or elsewhere): show the next one, or close."""
        self.drop([key])

    def drop(self, keys: list[str]) -> None:
        """Gates answered elsewhere, or gone with their child run: all leave at once, then the next is shown."""
        if not keys:
            return
        self.queue = [k for k in self.queue if k not in keys]
        if not self.is_mounted:  # (``_first_show`` shows what is left, or closes)
            return
        if not self.queue:
            self.dismiss(None)
            return
        self._stop_editing()
        self.show_current()

    def add(self, keys: list[str]) -> None:
        for key in keys:
            if key not in self.queue:
                self.queue.append(key)
        if self.is_mounted and not self.editing:  # never under the operator's fingers: the count catches up
            self.show_current()  # when editing stops

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in ("approve", "approve_all", "reject", "edit", "approve_edit", "always"):
            return False
        if not self.queue or not self.shown:  # (closing: answered meanwhile; or not drawn yet)
            return action == "defer"
        if action == "approve_all" and len(self.queue) < 2:
            return False
        if action == "always" and not self.current.startswith(CALL):
            return False
        typing = ("approve", "approve_all", "reject", "edit", "always", "toggle_context")
        return not (self.editing and action in typing)  # they type into the editor

    def action_approve(self) -> None:
        self.owner.post_message(self.Answered(self.current, True))

    def action_approve_all(self) -> None:
        """Every gate in the queue, after a confirmation naming how many (tool calls run as asked)."""
        queue = list(self.queue)

        def answer(yes: bool | None) -> None:
            if yes:
                for key in queue:
                    self.owner.post_message(self.Answered(key, True, f"approved with all {len(queue)} in the queue"))

        calls = sum(1 for k in queue if k.startswith(CALL))
        what = f"{len(queue) - calls} step(s) and {calls} tool call(s)" if calls else f"{len(queue)} steps"
        self.app.push_screen(ConfirmScreen(f"Approve all {len(queue)} waiting: {what}?"), answer)

    def action_always(self) -> None:
        if self.current.startswith(CALL):
            self.owner.post_message(self.Answered(self.current, True, "always allowed in this run", always=True))

    def action_reject(self) -> None:
        key = self.current

        def done(reason: str | None) -> None:
            if reason is not None:
                self.owner.post_message(self.Answered(key, False, reason or None))

        if key.startswith(CALL):
            question = f"Refuse tool call {key.removeprefix(CALL)}? Reason (the model receives it):"
        else:
            question = f"Reject {key}? Reason (optional):"
        self.app.push_screen(PromptScreen(question, "why not"), done)

    def action_edit(self) -> None:
        editor = self.query_one("#approval-editor", TextArea)
        if self.current.startswith(CALL):
            call = self.calls[self.current.removeprefix(CALL)]
            if call.schema and call.schema.get("properties"):
                self._edit_in_form(call.schema, call.arguments, "run with these arguments")
                return
            editor.text = json.dumps(call.arguments, indent=2)
        else:
            step = self.steps[self.current]
            schema = step.input_schema
            if schema and schema.get("properties") and isinstance(step.input, dict):
                self._edit_in_form(schema, step.input, "approve with this input")
                return
            editor.text = json.dumps(self.steps[self.current].input, indent=2)
        editor.display = True
        self.query_one("#approval-input").display = False
        self.editing = True
        what = "these arguments" if self.current.startswith(CALL) else "this input"
        self.query_one("#approval-keys", Static).update(Text(f"ctrl+s approve with {what}   esc stop editing"))
        editor.focus()

    def _edit_in_form(self, schema: dict[str, Any], value: Any, verb: str) -> None:
        """A tool call's arguments (a step's input) as a form generated from its schema (nested values as JSON)."""
        form = SchemaForm(schema, value if isinstance(value, dict) else {}, id="approval-form")
        self.query_one("#approval-dialog").mount(form, before=self.query_one("#approval-error"))
        self.query_one("#approval-input").display = False
        self.editing = True
        self.query_one("#approval-keys", Static).update(Text(f"ctrl+s {verb}   esc stop editing"))
        self.call_after_refresh(form.focus_first)

    def _form_value(self, form: SchemaForm) -> Any:
        """The form's object, checked against the whole schema; ``...`` (and the problem shown) if refused."""
        from core import ToolError, check_arguments  # (core.tools: loaded by the first form checked, not at start)

        key = self.current
        try:
            value = form.value()
            if key.startswith(CALL):
                call = self.calls[key.removeprefix(CALL)]
                check_arguments(call.tool, call.schema or {}, value)
            else:
                check_arguments(key, form.schema, value, what=f'the input of step "{key}"')
        except (FormError, ToolError) as exc:
            self.show_error(str(exc))
            return ...
        return value

    def action_approve_edit(self) -> None:
        if not self.editing:
            return
        forms = self.query(SchemaForm)
        if forms:
            value = self._form_value(forms.first())
            if value is not ...:
                what = "arguments" if self.current.startswith(CALL) else "input"
                self.owner.post_message(self.Answered(self.current, True, f"{what} edited in the dashboard", value))
            return
        text = self.query_one("#approval-editor", TextArea).text
        call = self.current.startswith(CALL)
        try:
            value = parse_json(text, "the arguments text" if call else "the input")
        except BadInput as exc:  # not JSON, too deep, NaN...: refused in place, the same rule as `approve --input`
            self.show_error(str(exc))
            return
        why = "arguments edited in the dashboard" if call else "input edited in the dashboard"
        self.owner.post_message(self.Answered(self.current, True, why, value))

    def action_defer(self) -> None:
        if self.editing:
            self._stop_editing()
            self.show_current()
            return
        if self.on_defer is not None:
            self.on_defer(list(self.queue))
        self.dismiss(None)

    def _stop_editing(self) -> None:
        self.editing = False
        self.query(SchemaForm).remove()
        self.query_one("#approval-editor").display = False
        self.query_one("#approval-input").display = True

    @on(TextArea.Changed)
    def _clear_error(self) -> None:
        self.query_one("#approval-error", Static).update("")


def _no_server(tool: str) -> str:
    from core import BUILTIN_TOOLS  # (core.tools and pydantic: loaded by the first call shown, not at start)

    return "(built in)" if tool in BUILTIN_TOOLS else "(a skill)"


def _of_child(key: str) -> Text:
    """`` of child run ID`` for a child run's gate (``CHILD/KEY``), else nothing."""
    child, _ = split_child(key.removeprefix(CALL))
    return Text.assemble(" of child run ", literal(child, "bold")) if child else Text()
