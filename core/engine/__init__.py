"""The engine: one run driven to its end in one process.

    controller.py   RunController: the drive loop, tying the parts below together
    run_state.py    RunState and RunMode: a run as the process holds it
    known_plans.py  plans validated as their runs were created here, taken back by their driver
    transitions.py  the one place a step's or a run's status changes
    actions.py      operator actions as typed commands, decided by one pure function
    attempts.py     an attempt: the executor call, timeout, streamed and late output
    routing.py      breakers per target and where a step goes when its target is down
    slot_pool.py    the agent slots this run holds (cluster-wide ``max_concurrency``)
    scheduler.py    the O(1) ready index        budget.py   token budget with reservations
    breaker.py      circuit breakers            bus.py      in-process publish/subscribe
    coalesce.py     batching small writes       supervision.py  side tasks that cannot die unnoticed

Layering (checked by import-linter): ``engine`` uses ``model``, ``executors``,
``store`` and ``cluster``; none of those use ``engine``.
"""
