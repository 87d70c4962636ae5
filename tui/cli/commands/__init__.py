"""What the commands do, one module per group (their syntax is in ``tui.cli.parser``).

driving    run, demo, resume, submit, worker     planning  plan, approve-plan, skills
acting     approve, cancel, finish, budget, replan, feedback
reading    runs, show, agents, export, workers, schema
dashboard  the Textual dashboard (plain ``loopdeck``, attach, and run/demo/resume without --headless)

A group's module is imported only when one of its commands runs.
"""
