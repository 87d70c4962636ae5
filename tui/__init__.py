"""loopdeck's front ends. They use only ``core``'s public API (checked by import-linter).

cli/        the ``loopdeck`` command line
dashboard/  the Textual dashboard
text/       untrusted text shown literally (never markup, never an escape)
"""
