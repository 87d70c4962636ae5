"""Commands: actions queued for the process that drives a run, and their answers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, insert, select, update

from core.store import schema
from core.store.base import StoreBase
from core.store.batch import WriteBatch
from core.store.notify import ANSWERS_CHANNEL, COMMANDS_CHANNEL, notify
from core.store.records import CommandRecord


class CommandQueries(StoreBase):
    async def enqueue_command(self, run_id: str, kind: str, payload: dict[str, Any], user: str | None) -> int:
        ids: list[int] = []

        def extra(conn: Connection) -> None:
            result = conn.execute(
                insert(schema.commands).returning(schema.commands.c.id),
                [
                    {
                        "run_id": run_id,
                        "kind": kind,
                        "payload_json": json.dumps(payload),
                        "created_by": user,
                        "created_at": time.time(),
                        "state": "queued",
                    }
                ],
            )
            ids.append(result.scalar_one())
            notify(conn, COMMANDS_CHANNEL, run_id)  # wake the driving process now instead of at its next poll

        await self.write(WriteBatch(extras=[extra]))
        return ids[0]

    async def queued_commands(self, run_id: str) -> list[CommandRecord]:
        def q(conn: Connection) -> list[CommandRecord]:
            stmt = (
                select(schema.commands)
                .where(schema.commands.c.run_id == run_id, schema.commands.c.state == "queued")
                .order_by(schema.commands.c.id)
            )
            return [CommandRecord.from_row(r) for r in (conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def get_command(self, command_id: int) -> CommandRecord:
        def q(conn: Connection) -> CommandRecord:
            row = (conn.execute(select(schema.commands).where(schema.commands.c.id == command_id))).mappings().one()
            return CommandRecord.from_row(row)

        return await self._read(q)

    @staticmethod
    def answer_command_extra(command_id: int, state: str, result: str) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(
                update(schema.commands)
                .where(schema.commands.c.id == command_id, schema.commands.c.state == "queued")
                .values(state=state, result=result, answered_at=time.time())
            )
            notify(conn, ANSWERS_CHANNEL, str(command_id))  # the sender waits on this, not on a poll

        return extra
