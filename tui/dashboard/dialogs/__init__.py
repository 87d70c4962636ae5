"""Modal dialogs: they check what the operator typed but act on nothing; their answer goes to the screen that opened them."""
