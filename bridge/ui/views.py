"""What each page shows, as JSON data: runs, one run, migrations.

Everything is read through the client the CLI uses (`bridge.connect()`): with migration
rules that is the routing client, so runs of every engine are listed and each run is read
from the engine that owns it. Payloads arrive decoded by the client's codec (decrypted
where keys are configured). Every string leaves through `clean()`, which masks database
passwords (`bridge._redact`), so no page can show one, whatever an engine's error says.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge import codec
from bridge._redact import mask
from bridge.backend import Status, WorkflowDescription
from bridge.client import Client
from bridge.config import Settings
from bridge.errors import BridgeError, ConfigError
from bridge.history import EventType
from bridge.search import parse
from bridge.ui.timeline import bars, error_text

__all__ = [
    "LIST_WINDOW",
    "MigrationsView",
    "RunFilters",
    "clean",
    "engine_names",
    "engine_summary",
    "run_view",
    "runs_view",
]

#: How many of the newest runs per engine the runs page reads; counts and filters apply
#: to these (a page that lists more belongs to `bridge list --where`).
LIST_WINDOW = 1000
#: How many route rows the migrations chart reads, newest first.
ROUTE_WINDOW = 5000
#: Points of the open/finished chart.
CHART_POINTS = 24
#: At most this often the migrations page asks the engines about open routes (as `bridge
#: migrate status --refresh` does), so its counts follow runs that finished elsewhere.
ROUTE_REFRESH_EVERY = 5.0
#: Open routes asked about per refresh.
ROUTE_REFRESH_LIMIT = 1000
#: Longer JSON payloads are cut on the page (the CLI prints them whole).
PAYLOAD_CHARS = 4000


def clean(value: Any) -> Any:
    """`value` as JSON data with every string masked: the last step before a reply."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean(codec.to_jsonable(value, where="a page of bridge ui"))


def _payload(value: Any) -> Any:
    """A payload for display: as it is when short, else its JSON text cut short."""
    text = codec.dumps(value)
    if len(text) <= PAYLOAD_CHARS:
        return value
    return {"truncated": f"{text[:PAYLOAD_CHARS]}… ({len(text)} characters)"}


def _error(exc: BaseException) -> str:
    """An engine's failure in one line, masked; a BridgeError already says what to do."""
    if isinstance(exc, BridgeError):
        return mask(str(exc))
    return mask(f"{type(exc).__name__}: {exc}")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


# -- engines -----------------------------------------------------------------------------
def _routing(client: Client) -> Any:
    """The router of a routing client, else None (a client of one engine)."""
    return getattr(client, "router", None)


def engine_names(client: Client) -> list[str]:
    """The engines the client sees: every engine the router knows, or its one backend."""
    router = _routing(client)
    return router.engines() if router is not None else [client.backend_name]


async def _engine_client(client: Client, engine: str) -> Client:
    router = _routing(client)
    return client if router is None else await router.client(engine)


def engine_summary(settings: Settings, names: list[str]) -> list[dict[str, str]]:
    """Each engine's backend and where it is, with passwords masked: what an operator needs
    to tell two engines apart, and no secret."""
    found = []
    for name in names:
        try:
            engine = settings.engine(name) if name != settings.backend else settings
        except ConfigError as exc:
            found.append({"name": name, "backend": "?", "target": _error(exc)})
            continue
        section = getattr(engine, engine.backend, None)
        target = getattr(section, "url", None) or getattr(section, "address", None) or ""
        namespace = getattr(section, "namespace", None)
        if namespace:
            target = f"{target} ({namespace})"
        found.append({"name": name, "backend": engine.backend, "target": mask(str(target))})
    return found


# -- runs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunFilters:
    """The runs page's filters, from its query string."""

    status: str | None = None
    workflow: str | None = None
    engine: str | None = None
    search: str | None = None
    where: str | None = None
    page: int = 0
    size: int = 25

    @classmethod
    def parse(cls, params: dict[str, str]) -> RunFilters:
        """Filters from query parameters; a bad one is a ValueError naming it."""

        def text(key: str) -> str | None:
            value = params.get(key, "").strip()
            return value or None

        status = text("status")
        if status is not None and status.upper() not in Status.__members__:
            raise ValueError(f"status must be one of {', '.join(Status.__members__)}")
        try:
            page, size = int(params.get("page") or 0), int(params.get("size") or 25)
        except ValueError:
            raise ValueError("page and size must be whole numbers") from None
        if page < 0 or not 1 <= size <= 200:
            raise ValueError("page must be 0 or more and size between 1 and 200")
        return cls(
            status=None if status is None else status.upper(),
            workflow=text("workflow"),
            engine=text("engine"),
            search=text("search"),
            where=text("where"),
            page=page,
            size=size,
        )

    def query(self) -> str | None:
        """The search query the engines run: `where` and the workflow type."""
        parts = []
        if self.where:
            parts.append(f"({self.where})")
        if self.workflow:
            parts.append(f"WorkflowType = {codec.dumps(self.workflow)}")
        return " AND ".join(parts) or None


def _run_row(desc: WorkflowDescription, engine: str) -> dict[str, Any]:
    return {
        "id": desc.id,
        "engine": engine,
        "workflow": desc.name,
        "status": desc.status.value,
        "blocked": desc.blocked,
        "created": _iso(desc.created_at),
        "updated": _iso(desc.updated_at),
        "ended": _iso(desc.updated_at) if desc.status.is_terminal else None,
        "waiting_for": desc.waiting_for,
    }


async def runs_view(client: Client, filters: RunFilters) -> dict[str, Any]:
    """One list across engines, newest first, with counts by status and a page of rows.

    Each engine is asked on its own (at once), so an engine that cannot be reached shows
    its error beside the others' runs instead of emptying the page."""
    names = engine_names(client)
    if filters.engine is not None:
        names = [n for n in names if n == filters.engine]
    query = filters.query()
    if query is not None:
        parse(query)  # a bad query is the user's to fix (InvalidSearchQueryError), not an engine's

    async def one(engine: str) -> list[WorkflowDescription]:
        return await (await _engine_client(client, engine)).list(limit=LIST_WINDOW, query=query)

    answers = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
    rows: list[tuple[float, dict[str, Any]]] = []
    engines = []
    truncated = False
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer
            engines.append({"name": name, "error": _error(answer)})
            continue
        engines.append({"name": name, "error": None, "runs": len(answer)})
        truncated = truncated or len(answer) >= LIST_WINDOW
        for desc in answer:
            if filters.search and filters.search.lower() not in desc.id.lower():
                continue
            rows.append((desc.created_at.timestamp(), _run_row(desc, desc.engine or name)))
    rows.sort(key=lambda r: r[0], reverse=True)
    counts = Counter(row["status"] for _, row in rows)
    chosen = [row for _, row in rows if filters.status in (None, row["status"])]
    first = filters.page * filters.size
    return {
        "runs": chosen[first : first + filters.size],
        "total": len(chosen),
        "page": filters.page,
        "size": filters.size,
        "counts": {s.value: counts.get(s.value, 0) for s in Status},
        "engines": engines,
        "workflows": sorted({row["workflow"] for _, row in rows}),
        "window": LIST_WINDOW,
        "truncated": truncated,
    }


# -- one run -----------------------------------------------------------------------------
async def run_view(client: Client, run_id: str) -> dict[str, Any]:
    """A run: its description, input and output, pending waits and timeline bars.

    Raises WorkflowNotFoundError (from the owning engine) for an unknown id."""
    desc = await client.describe(run_id)
    events = await client.history(run_id)
    started = next((e for e in events if e.type is EventType.WORKFLOW_STARTED), None)
    origin = started.time if started is not None else desc.created_at
    timeline = bars(events)
    terminal = desc.status.is_terminal
    pending = [
        {"kind": b.kind, "name": b.name, "step": b.step, "since": _iso(b.start)}
        for b in timeline
        if b.end is None and not terminal
    ]
    if desc.waiting_for and not any(p["name"] == desc.waiting_for for p in pending):
        pending.append({"kind": "wait", "name": desc.waiting_for, "step": None, "since": None})
    now = datetime.now(UTC)
    end = desc.updated_at if terminal else now
    return {
        "id": desc.id,
        "workflow": desc.name,
        "engine": desc.engine or desc.backend,
        "backend": desc.backend,
        "status": desc.status.value,
        "blocked": desc.blocked,
        "terminal": terminal,
        "created": _iso(desc.created_at),
        "updated": _iso(desc.updated_at),
        "waiting_for": desc.waiting_for,
        "search_attributes": desc.search_attributes,
        "input": _payload(started.args if started is not None else None),
        "output": _payload(desc.result) if desc.status is Status.COMPLETED else None,
        "error": error_text(desc.error),
        "pending": pending,
        "span": max((end - origin).total_seconds(), 0.0),
        "bars": [{**b.to_dict(origin), "args": _payload(b.args)} for b in timeline],
        "events": len(events),
    }


# -- migrations --------------------------------------------------------------------------
class MigrationsView:
    """The migrations page's data. Kept between requests for one thing: open routes are
    checked with their engines at most every ROUTE_REFRESH_EVERY seconds."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._refreshed_at = 0.0

    async def view(self) -> dict[str, Any]:
        """Per workflow type: its rule, each engine's counts and drain state (what `bridge
        migrate status` computes), its open/finished chart, its shadow outcomes with their
        diffs (what `bridge migrate report` shows); and the outboxes' dead letters."""
        router = _routing(self.client)
        if router is None:
            return {"workflows": [], "dead_letters": [], "warning": None, "migrating": False}
        # Imported on use: the migration feature's code, for configurations with rules.
        from bridge.migrate._cli import status_answer
        from bridge.migrate._cli_report import report_answer

        due = time.monotonic() - self._refreshed_at >= ROUTE_REFRESH_EVERY
        answer = await status_answer(
            router, self.settings, refresh_limit=ROUTE_REFRESH_LIMIT if due else None
        )
        if due:
            self._refreshed_at = time.monotonic()
        compared = await asyncio.to_thread(report_answer, self.settings, limit=50)
        series = _route_series(router.table.list_routes(limit=ROUTE_WINDOW))
        workflows: dict[str, dict[str, Any]] = {}
        for row in answer["workflows"]:
            name = row["workflow"]
            rule = router.rule(name)
            entry = workflows.setdefault(
                name,
                {
                    "workflow": name,
                    "rule": row["rule"],
                    "from": None if rule is None else rule.from_,
                    "to": None if rule is None else rule.to,
                    "ramp": row["ramp"],
                    "paused": row["paused"],
                    "shadow": row["shadowed"],
                    "engines": [],
                    "chart": series.get(name, {"times": [], "engines": {}}),
                    "shadows": [],
                },
            )
            entry["engines"].append(
                {
                    key: row[key]
                    for key in (
                        "engine",
                        "role",
                        "open",
                        "finished",
                        "failed_starts",
                        "state",
                        "shadow",
                    )
                }
            )
        for outcome in compared.rows:
            entry = workflows.get(outcome.workflow)
            if entry is not None:
                entry["shadows"].append(outcome.to_dict())
        return {
            "workflows": list(workflows.values()),
            "dead_letters": answer["dead_letters"],
            "refreshed": answer["refreshed"],
            "warning": router.warning,
            "migrating": True,
        }


def _route_series(routes: list[Any]) -> dict[str, dict[str, Any]]:
    """Per workflow type and engine, how many runs were open and how many finished at
    CHART_POINTS times from the first route to now, from the routes' created and closed
    times (the routing table keeps both)."""
    if not routes:
        return {}
    now = time.time()
    first = min(r.created_at for r in routes)
    step = max(now - first, 1.0) / (CHART_POINTS - 1)
    times = [first + i * step for i in range(CHART_POINTS)]
    found: dict[str, dict[str, Any]] = {}
    for route in routes:
        entry = found.setdefault(
            route.workflow,
            {
                "times": [datetime.fromtimestamp(t, tz=UTC).isoformat() for t in times],
                "engines": {},
            },
        )
        lines = entry["engines"].setdefault(
            route.engine, {"open": [0] * CHART_POINTS, "finished": [0] * CHART_POINTS}
        )
        for i, at in enumerate(times):
            if route.created_at > at:
                continue
            if route.closed_at is not None and route.closed_at <= at:
                lines["finished"][i] += 1
            else:
                lines["open"][i] += 1
    return found
