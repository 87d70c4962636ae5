"""The dashboard's colours by meaning, taken from the current Textual theme.

Python code never names a colour: it styles text with a semantic name
(``"status.failed"``, ``"badge.waiting"``) and this table says what each
looks like in terms of the theme's variables (``text-error``, ``warning``…).
The app installs the table into its console as a Rich theme whenever the
Textual theme changes (``install``), so Rich ``Text`` built anywhere in the
dashboard — tree labels, the header, table cells, the log — is drawn in the
theme's colours, light themes included.

Why a Rich theme rather than component classes: labels are Rich ``Text``
built by small pure functions (``step_label``, ``gauge``) that have no widget
to ask; a console theme resolves the names where the text is rendered, with
one table for every widget.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from rich.console import Console
from rich.style import Style
from rich.theme import Theme
from textual.color import Color, ColorParseError

# name: (text attributes, foreground variable, background variable)
SEMANTIC: dict[str, tuple[str, str | None, str | None]] = {
    # a run's or a step's status
    "status.pending": ("dim", None, None),
    "status.planning": ("bold", None, None),
    "status.running": ("bold", "text-accent", None),
    "status.waiting_user": ("bold", "text-warning", None),
    "status.awaiting_plan_approval": ("bold", "text-warning", None),
    "status.succeeded": ("bold", "text-success", None),
    "status.failed": ("bold", "text-error", None),
    "status.rejected": ("bold", "text-error", None),
    "status.canceled": ("bold", "text-warning", None),
    "status.skipped": ("dim", None, None),
    "status.interrupted": ("", "text-warning", None),
    "status.denied": ("", "text-error", None),
    "status.orphaned": ("bold", "text-error", None),
    # circuit breakers
    "breaker.closed": ("", "text-success", None),
    "breaker.half_open": ("", "text-warning", None),
    "breaker.open": ("bold", "text-error", None),
    # the token gauge
    "gauge.ok": ("", "text-success", None),
    "gauge.high": ("", "text-warning", None),
    "gauge.over": ("", "text-error", None),
    # header badges and notes
    "badge.waiting": ("bold reverse", "text-warning", None),
    "badge.deadline": ("bold", "text-warning", None),
    "badge.frozen": ("bold reverse", "text-primary", None),
    "badge.read_only": ("reverse", None, None),
    "badge.orphaned": ("bold reverse", "text-error", None),
    # text by role
    "key": ("bold", "text-accent", None),  # a key binding, a step key in the log
    "note": ("", "text-warning", None),  # attempts, holds, "(edited)", "⏸ gate"
    "error": ("", "text-error", None),
    "muted": ("dim", None, None),
    # JSON (Rich's JSONHighlighter names its parts so)
    "json.key": ("bold", "text-primary", None),
    "json.str": ("", "text-success", None),
    "json.number": ("", "text-accent", None),
    "json.bool_true": ("italic", "text-warning", None),
    "json.bool_false": ("italic", "text-warning", None),
    "json.null": ("dim italic", None, None),
    "json.brace": ("bold", None, None),
}


def style_of(attributes: str, foreground: str | None, background: str | None, variables: Mapping[str, str]) -> Style:
    """One semantic style in the theme given by its variables (a value Rich cannot use is left out)."""
    style = Style.parse(attributes) if attributes else Style()
    colors = {}
    for name, variable in (("color", foreground), ("bgcolor", background)):
        if variable and variable in variables:
            with contextlib.suppress(ColorParseError):
                colors[name] = Color.parse(variables[variable]).rich_color
    return style + Style(**colors)


def rich_theme(variables: Mapping[str, str]) -> Theme:
    return Theme({name: style_of(*spec, variables) for name, spec in SEMANTIC.items()}, inherit=True)


def named(group: str, value: str) -> str:
    """The style of a value of a group (``named("breaker", "open")``); "" for one the table does not know, so
    text from events never makes a style lookup fail."""
    name = f"{group}.{value}"
    return name if name in SEMANTIC else ""


def status_style(status: str) -> str:
    """The style of a run's, step's or call's status."""
    return named("status", status)


def install(console: Console, variables: Mapping[str, str], replacing: bool) -> None:
    """Put a theme's semantic styles (its CSS variables) on the console, ``replacing`` the ones installed before."""
    if replacing:
        console.pop_theme()
    console.push_theme(rich_theme(variables))
