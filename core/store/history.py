"""What runs leave behind: execution spans, operator feedback, per-agent summaries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, case, func, insert, select

from core.model.money import usd
from core.store import schema
from core.store.base import StoreBase
from core.store.records import FeedbackRecord, SpanRecord


class HistoryQueries(StoreBase):
    async def spans_of(self, run_id: str) -> list[SpanRecord]:
        def q(conn: Connection) -> list[SpanRecord]:
            stmt = (
                select(schema.spans)
                .where(schema.spans.c.run_id == run_id)
                .order_by(schema.spans.c.started_at, schema.spans.c.id)
            )
            return [SpanRecord.from_row(r) for r in (conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def feedback_of(self, run_id: str) -> list[FeedbackRecord]:
        def q(conn: Connection) -> list[FeedbackRecord]:
            stmt = select(schema.feedback).where(schema.feedback.c.run_id == run_id).order_by(schema.feedback.c.id)
            return [FeedbackRecord.from_row(r) for r in (conn.execute(stmt)).mappings()]

        return await self._read(q)

    @staticmethod
    def feedback_extra(row: dict[str, Any]) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(insert(schema.feedback), [row])

        return extra

    async def agent_summary(self, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Per agent: attempts, failures, tokens (from attempt spans) and feedback (up, down, rate)."""
        sp, fb = schema.spans, schema.feedback

        def q(conn: Connection) -> dict[str, dict[str, Any]]:
            failed = func.sum(case((sp.c.status == "failed", 1), else_=0))
            unpriced = func.sum(
                case(((sp.c.cost_usd.is_(None)) & (sp.c.prompt_tokens + sp.c.completion_tokens > 0), 1), else_=0)
            )
            spans_q = (
                select(
                    sp.c.agent,
                    func.count(),
                    failed,
                    func.sum(sp.c.prompt_tokens),
                    func.sum(sp.c.completion_tokens),
                    func.sum(sp.c.cost_usd),
                    unpriced,
                )
                .where(sp.c.kind == "attempt")
                .group_by(sp.c.agent)
            )  # turns and tool calls are inside attempts
            up = func.sum(case((fb.c.rating == "up", 1), else_=0))
            down = func.sum(case((fb.c.rating == "down", 1), else_=0))
            fb_q = select(fb.c.agent, up, down).group_by(fb.c.agent)
            if run_id is not None:
                spans_q = spans_q.where(sp.c.run_id == run_id)
                fb_q = fb_q.where(fb.c.run_id == run_id)
            out: dict[str, dict[str, Any]] = {}
            for agent, attempts, failures, prompt, completion, cost, n_unpriced in conn.execute(spans_q):
                out[agent] = _agent_entry(attempts, failures, prompt or 0, completion or 0)
                out[agent]["cost_usd"] = usd(cost)  # of its priced attempts
                out[agent]["unpriced_attempts"] = n_unpriced or 0
            for agent, n_up, n_down in conn.execute(fb_q):
                entry = out.setdefault(agent, _agent_entry(0, 0, 0, 0))
                total = (n_up or 0) + (n_down or 0)
                entry["feedback"] = {
                    "up": n_up or 0,
                    "down": n_down or 0,
                    "rate": round((n_up or 0) / total, 4) if total else None,
                }
            return dict(sorted(out.items()))

        return await self._read(q)


def _agent_entry(attempts: int, failures: int, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "attempts": attempts,
        "failures": failures,
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "cost_usd": 0.0,
        "unpriced_attempts": 0,
        "feedback": {"up": 0, "down": 0, "rate": None},
    }
