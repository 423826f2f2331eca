"""The runbook's live workload and its check: `python -m examples.orders_load run|check`.

`run` starts an order every 1/RATE seconds through `bridge.connect()` (a routing client
when `[migrate.place_order]` exists, re-reading the rules every `[router] reload_every`
seconds, so `bridge migrate set` moves new orders while this runs) and sends each order
"shipped" SHIP_AFTER seconds after it started, to whichever engine owns it. Every id is
appended to the ids file once its start succeeded. It stops after --seconds, or on Ctrl-C /
SIGTERM, after shipping the orders already started.

`check` waits until every order in the ids file has finished and then proves the migration
kept the promise: every order completed (none lost), exactly one charge and one email
committed per order (none doubled), and it says which engine ran how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

import bridge
from bridge.testing import ledger
from examples.orders import Order, place_order

app = typer.Typer(add_completion=False, no_args_is_help=True)

LedgerOption = Annotated[Path, typer.Option("--ledger", help="The stand-in services' ledger.")]
IdsOption = Annotated[Path, typer.Option("--ids", help="One started order id per line.")]


@app.command()
def run(
    ledger_path: LedgerOption = Path(".bridge/runbook/ledger.db"),
    ids: IdsOption = Path(".bridge/runbook/orders.txt"),
    rate: Annotated[float, typer.Option(help="New orders per second.")] = 5.0,
    ship_after: Annotated[float, typer.Option(help="Seconds until an order ships.")] = 1.0,
    seconds: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
    prefix: Annotated[str, typer.Option(help="Order ids are PREFIX-N.")] = "order",
) -> None:
    """Start orders at RATE per second and ship each SHIP_AFTER seconds later."""
    asyncio.run(_run(ledger_path, ids, rate, ship_after, seconds, prefix))


async def _run(
    ledger_path: Path, ids: Path, rate: float, ship_after: float, seconds: float | None, prefix: str
) -> None:
    ids.parent.mkdir(parents=True, exist_ok=True)
    done = 0 if not ids.exists() else len(ids.read_text().split())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    deadline = None if seconds is None else time.monotonic() + seconds
    shipping: set[asyncio.Task[None]] = set()
    async with await bridge.connect() as client:

        async def ship(id: str) -> None:
            await asyncio.sleep(ship_after)
            await client.signal(id, "shipped", {"tracking": f"trk-{id}"})

        n = done
        with ids.open("a") as out:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                id = f"{prefix}-{n}"
                order = Order(
                    order_id=id,
                    sku="SKU-MUG",
                    amount_cents=1299,
                    email=f"{id}@example.com",
                    ledger=str(ledger_path),
                )
                try:
                    await client.start(place_order, order, id=id)
                except Exception as exc:  # a refused start is reported, not hidden
                    print(f"start of {id} failed: {exc}", file=sys.stderr, flush=True)
                else:
                    out.write(id + "\n")
                    out.flush()
                    task = asyncio.ensure_future(ship(id))
                    shipping.add(task)
                    task.add_done_callback(shipping.discard)
                n += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1 / rate)
        await asyncio.gather(*shipping)
        print(f"started {n - done} orders ({prefix}-{done}..{prefix}-{n - 1})", flush=True)


@app.command()
def check(
    ledger_path: LedgerOption = Path(".bridge/runbook/ledger.db"),
    ids: IdsOption = Path(".bridge/runbook/orders.txt"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for open orders.")] = 120.0,
) -> None:
    """Wait for every order to finish; fail unless each completed with one charge and one
    email."""
    problems = asyncio.run(_check(ledger_path, ids, timeout))
    raise typer.Exit(1 if problems else 0)


async def _check(ledger_path: Path, ids: Path, timeout: float) -> int:
    wanted = ids.read_text().split()
    engines: Counter[str] = Counter()
    problems: list[str] = []
    async with await bridge.connect() as client:
        deadline = time.monotonic() + timeout
        for id in wanted:
            while True:
                desc = await client.describe(id)
                if desc.status.is_terminal or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            engines[desc.engine or desc.backend] += 1
            if desc.status is not bridge.Status.COMPLETED:
                problems.append(f"{id}: {desc.status.value}")
    committed = Counter(e.key for e in ledger.entries(ledger_path) if not e.key.startswith("call:"))
    calls = Counter(e.key for e in ledger.entries(ledger_path) if e.key.startswith("call:"))
    for id in wanted:
        for effect in ("charge", "email"):
            if committed[f"{effect}:{id}"] != 1:
                problems.append(f"{id}: {committed[f'{effect}:{id}']} {effect} committed")
    repeats = sum(n - 1 for n in calls.values() if n > 1)
    print(
        f"{len(wanted)} orders: {len(wanted) - len(problems)} completed with one charge and one "
        f"email; {len(problems)} problem(s); repeated calls absorbed by idempotency keys: "
        f"{repeats}; by engine: "
        + ", ".join(f"{engine} {n}" for engine, n in sorted(engines.items())),
        flush=True,
    )
    for problem in problems[:20]:
        print("  " + problem, flush=True)
    return len(problems)


if __name__ == "__main__":
    app()
