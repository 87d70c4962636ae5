"""``python -m tui.cli``: the same as the ``loopdeck`` command."""

from tui.cli import entry

entry()
