"""Several processes on one database: who drives a run, shared slots, actions sent across processes.

lease.py     run leases: exactly one process drives a run
slots.py     agent slots shared by every process (``max_concurrency`` across workers)
commands.py  the command channel: send an action to a run's driver, await its answer (NOTIFY, with a poll fallback)
"""
