"""Modal dialogs: they check what the operator typed but act on nothing.

Their answer goes, as a message, to the screen that opened them.
"""
