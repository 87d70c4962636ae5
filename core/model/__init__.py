"""The model: what a plan and a run are, with no I/O and no engine.

    plan.py        plan files: pydantic models, loading, whole-plan validation
    states.py      run and step statuses and the moves allowed between them
    events.py      typed run events (every state change is one)
    projection.py  events folded into run and step state (the CLI and the dashboard both read it)
    dag.py         graph algorithms on step dependencies
    refs.py        ``{{steps.KEY.output}}`` references
    context.py     what a step sees of the work upstream of it
    replan.py      appending or replacing steps of a live run
    skills.py      Python callables registered by name

Depends on nothing else in ``core`` but ``errors``, ``limits`` and ``values``.
"""
