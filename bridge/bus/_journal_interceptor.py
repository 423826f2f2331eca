"""Completion events written by an embedded journal, in the transaction that ends the run.

With `[sql] outbox = true`, an embedded journal (sql, and langgraph once its store calls the
hooks) publishes `bridge.workflow.completed.v1` / `failed.v1` to the bus's SQL outbox tables
in its own database: the event is committed if and only if the run's final status is. The
journal store does not import the bus; it calls its interceptor chain (`bridge.interceptors`),
and this module is the bus's entry in it (entry point `outbox` of `bridge.interceptors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.interceptors import Interceptor

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from bridge.config import Settings
    from bridge.interceptors import RunEnded

__all__ = ["OutboxPublisher", "interceptor"]


class OutboxPublisher(Interceptor):
    """Creates the outbox tables beside the journal's and writes each run's completion
    event with the run's ending. The outbox is imported on use: every client and worker
    loads this module, and only those with `[sql] outbox` need SQLAlchemy's tables."""

    def storage_opened(self, conn: Connection) -> None:
        from bridge.bus.outbox import create_tables

        create_tables(conn)

    def run_ended(self, conn: Connection, ended: RunEnded) -> None:
        from bridge.bus._completion import completion_event
        from bridge.bus.outbox import publish_in

        # The event id is the run's id and outcome: an ending written twice publishes once.
        publish_in(
            conn,
            completion_event(
                workflow_id=ended.workflow_id,
                workflow=ended.workflow,
                engine=ended.engine,
                status=ended.status,
                result=ended.result,
                error=ended.error,
                trace=ended.headers,
            ),
        )


def interceptor(settings: Settings) -> Interceptor | None:
    """The `bridge.interceptors` entry point: on when `[sql] outbox` is set."""
    return OutboxPublisher() if settings.sql.outbox else None
