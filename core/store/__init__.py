"""The store: where runs live. SQLAlchemy 2 async over SQLite or PostgreSQL.

store.py      the Store facade: open (migrating), close; its queries, split by aggregate:
runs.py       runs, plans, leases          steps.py     steps
events.py     the event log                commands.py  actions queued for a run's driver
cluster.py    workers, claims, agent slots history.py   spans, feedback, summaries
breakers.py   breaker states               tool_calls.py  the tool calls agents ask for
records.py    typed records every read returns (JSON columns decoded once)
writer.py     group commit: WriteBatch and the one writer (compare-and-set step updates)
notify.py     LISTEN/NOTIFY: every channel, every NOTIFY, the listener
schema.py, migrate.py, migrations/   the tables and how a database reaches them
"""

from core.store.batch import WriteBatch
from core.store.notify import (
    ANSWERS_CHANNEL,
    COMMANDS_CHANNEL,
    EVENTS_CHANNEL,
    RUNS_CHANNEL,
    Interest,
    Notifier,
    notify,
)
from core.store.records import (
    BreakerRecord,
    CommandRecord,
    FeedbackRecord,
    Lease,
    RunRecord,
    SpanRecord,
    StepRecord,
    ToolCallRecord,
    WorkerRecord,
)
from core.store.store import Store

__all__ = [
    "ANSWERS_CHANNEL",
    "COMMANDS_CHANNEL",
    "EVENTS_CHANNEL",
    "RUNS_CHANNEL",
    "BreakerRecord",
    "CommandRecord",
    "FeedbackRecord",
    "Interest",
    "Lease",
    "Notifier",
    "RunRecord",
    "SpanRecord",
    "StepRecord",
    "Store",
    "ToolCallRecord",
    "WorkerRecord",
    "WriteBatch",
    "notify",
]
