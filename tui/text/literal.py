"""Untrusted text (step inputs, outputs, errors, names) shown literally.

Rich markup is never parsed (we build ``Text`` objects, not markup strings),
and control characters — terminal escape sequences above all — are replaced
by visible escapes such as ``\\x1b``, so a step output cannot move the cursor,
recolour the screen or set the window title.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: object) -> str:
    """The string with every control character (except newline and tab) made visible."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def literal(value: object, style: str = "") -> Text:
    """A Rich ``Text`` that shows ``value`` exactly, markup and escapes included."""
    from rich.text import Text  # (here: a command that only says plain lines never loads Rich)

    return Text(clean(value), style=style)
