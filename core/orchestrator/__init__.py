"""The orchestrator: the one facade the CLI and the dashboard use.

It creates runs, drives them (taking the run's lease first), carries out
operator actions, and reads runs back. Its parts, one concern each:

    base.py     shared state: store, bus, identity, controllers; opening and closing
    acting.py   operator actions, carried out LIVE, REMOTE or OFFLINE by one decider
    driving.py  creating runs, taking leases, waiting out a plan review, driving
    reading.py  records, JSON views, events followed live without gaps
"""

from core.orchestrator.base import Delivery, default_user, new_run_id
from core.orchestrator.driving import Driving
from core.orchestrator.reading import Reading

__all__ = ["Delivery", "Orchestrator", "default_user", "new_run_id"]


class Orchestrator(Driving, Reading):
    """Open with ``await Orchestrator.open(db)`` (or ``async with await Orchestrator.open(db) as orch``)."""
