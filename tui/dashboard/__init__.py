"""The Textual dashboard: one state (the run's events, folded), several regions.

    app.py        LoopdeckApp: moves between screens on messages, reports worker failures
    context.py    DashboardContext: the orchestrator, user, clock and read-only flag every screen gets
    messages.py   navigation (OpenRun, ShowRuns): screens ask, the app moves
    actions.py    one registry of operator actions: bindings, footer, palette, help
    viewmodel.py  RunView/StepView over ``core.RunProjection``
    screens/      full screens: the runs list and the run (split by concern: gates, actions)
    dialogs/      modal dialogs: approval, plan review, help, confirm and prompt
    widgets/      the run screen's regions: header, DAG tree, step detail, event log
    loopdeck.tcss styles, with theme variables only

Layers (checked by import-linter): app -> screens -> dialogs -> widgets -> the
view model; screens never import each other or the app.
"""
