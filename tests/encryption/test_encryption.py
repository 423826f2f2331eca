"""Payload encryption (`bridge.encryption`): no plaintext at rest on any engine, rotation,
and a wrong or missing key that fails clearly and changes nothing.

The same workflow runs everywhere: a secret argument flows into an activity's argument and
result, a signal payload and the run's result; afterwards the stored bytes are searched for
it (SQLite: the file and its WAL; PostgreSQL: every row of the bridge's tables as text;
Temporal: the run's history), and the result read back through the client must be intact.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.encryption import PREFIX, Keyring, generate_key, is_sealed
from bridge.errors import ConfigError, PayloadKeyError
from tests.conftest import fast_sql, wait_for_status

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cr3t-XYZ"
K1 = generate_key()
K2 = generate_key()


@bridge.activity(name="enc_shout")
async def shout(secret: str) -> str:
    return f"{secret}-step"


@bridge.workflow(name="enc_flow")
async def flow(ctx: bridge.Context, secret: str) -> str:
    got = await ctx.run(shout, secret)
    more = await ctx.wait_for_signal("more")
    return f"{got}|{more}"


def _enc(keys: dict[str, str], current: str | None) -> dict[str, Any]:
    return {"keys": keys, "current": current}


def _ring(keys: dict[str, str], current: str) -> Keyring:
    return Keyring({k: base64.b64decode(v) for k, v in keys.items()}, current)


def _with(settings: dict[str, Any], encryption: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: v for k, v in settings.items() if k != "encryption"}
    if encryption is not None:
        out["encryption"] = encryption
    return out


async def _run_flow(settings: dict[str, Any], id: str) -> Any:
    """Start `flow` with the secret, signal it, and return its result (via the client)."""
    async with await bridge.connect(settings) as client, client.worker([flow]):
        await client.start(flow, SECRET, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
        await client.signal(id, "more", f"{SECRET}-signal")
        return await client.result(id, timeout=60)


async def _read(settings: dict[str, Any], id: str) -> tuple[Any, list[Any]]:
    async with await bridge.connect(settings) as client:
        return await client.result(id, timeout=10), await client.history(id)


EXPECTED = f"{SECRET}-step|{SECRET}-signal"


# -- the keyring itself ------------------------------------------------------------------
def test_keyring_round_trip_rotation_and_wrong_key() -> None:
    k1 = Keyring({"k1": base64.b64decode(K1)}, "k1")
    sealed = k1.seal('"hello"')
    assert sealed.startswith(PREFIX + "k1:") and "hello" not in sealed
    assert k1.open(sealed) == '"hello"'
    assert k1.open('"plain"') == '"plain"'  # written before encryption: read as it is
    rotated = Keyring({"k1": base64.b64decode(K1), "k2": base64.b64decode(K2)}, "k2")
    assert rotated.open(sealed) == '"hello"'
    assert rotated.seal("1").startswith(PREFIX + "k2:")
    wrong = Keyring({"k1": base64.b64decode(K2)}, "k1")
    with pytest.raises(PayloadKeyError, match="'k1'") as info:
        wrong.open(sealed)
    assert K2 not in str(info.value)
    missing = Keyring({"k2": base64.b64decode(K2)}, "k2")
    with pytest.raises(PayloadKeyError, match="not configured"):
        missing.open(sealed)


def test_bad_settings_never_print_the_key() -> None:
    from bridge.config import load_settings
    from bridge.encryption import keyring_from_settings

    short = base64.b64encode(b"0123456789").decode()
    s = load_settings(overrides={"encryption": {"keys": {"k1": short}, "current": "k1"}})
    with pytest.raises(ConfigError, match="10 bytes") as info:
        keyring_from_settings(s.encryption)
    assert short not in str(info.value)
    s = load_settings(overrides={"encryption": {"keys": {"k1": K1}, "current": "k9"}})
    with pytest.raises(ConfigError, match="k9") as info:
        keyring_from_settings(s.encryption)
    assert K1 not in str(info.value)
    assert K1 not in repr(s)


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.config import load_settings
    from bridge.encryption import keyring_from_settings

    monkeypatch.setenv("MYAPP_K1", K1)
    s = load_settings(
        environ={
            "BRIDGE_ENCRYPTION_KEYS": '{"k1": "env:MYAPP_K1"}',
            "BRIDGE_ENCRYPTION_CURRENT": "k1",
        }
    )
    ring = keyring_from_settings(s.encryption)
    assert ring is not None and ring.current == "k1"
    assert ring.open(ring.seal("[1]")) == "[1]"


# -- SQLite: the sql and langgraph journals ----------------------------------------------
def _sqlite_bytes(path: Path) -> bytes:
    """The database file and its WAL (and shm): everything SQLite keeps on disk."""
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = path.with_name(path.name + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


def _sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: db.execute(f'SELECT * FROM "{n}"').fetchall() for n in names}
    finally:
        db.close()


def _sqlite_settings(backend: str, tmp_path: Path, keys: dict[str, Any] | None) -> Any:
    url = f"sqlite:///{tmp_path}/{backend}.db"
    base = {"backend": backend, backend: fast_sql(url)}
    return _with(base, keys), tmp_path / f"{backend}.db"


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_no_plaintext_in_the_sqlite_file(backend: str, tmp_path: Path) -> None:
    if backend == "langgraph":
        pytest.importorskip("langgraph")
    settings, path = _sqlite_settings(backend, tmp_path, _enc({"k1": K1}, "k1"))
    bus = None
    if backend == "sql":
        # The bus outbox in the journal's database: the completion event carries the result.
        from bridge.bus.outbox import SqlOutbox

        settings["sql"]["outbox"] = True
        bus = SqlOutbox(url=settings["sql"]["url"], codec=_ring({"k1": K1}, "k1"))
        await bus.subscribe("enc-test")
    id = f"enc-{backend}-{uuid.uuid4().hex[:8]}"
    assert await _run_flow(settings, id) == EXPECTED
    if bus is not None:
        (delivery,) = await bus.claim("enc-test")
        assert delivery.event.data["result"] == EXPECTED
        await bus.close()
    stored = _sqlite_bytes(path)
    assert stored, "the database file is empty"
    assert SECRET.encode() not in stored
    rows = _sqlite_rows(path)
    assert SECRET not in repr(rows)
    # Something was stored sealed (the journal's payload columns at least).
    assert PREFIX in repr(rows)
    # Read back through the client (and the history the CLI prints), decrypted.
    result, history = await _read(settings, id)
    assert result == EXPECTED
    assert SECRET in repr(history)


async def test_plaintext_journal_stays_readable_after_turning_encryption_on(
    tmp_path: Path,
) -> None:
    settings, path = _sqlite_settings("sql", tmp_path, None)
    old = f"enc-plain-{uuid.uuid4().hex[:8]}"
    assert await _run_flow(settings, old) == EXPECTED
    assert SECRET.encode() in _sqlite_bytes(path)  # the measurement this feature fixes
    on = _with(settings, _enc({"k1": K1}, "k1"))
    result, _ = await _read(on, old)
    assert result == EXPECTED
    new = f"enc-after-{uuid.uuid4().hex[:8]}"
    assert await _run_flow(on, new) == EXPECTED


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_rotation_keeps_old_payloads_readable(backend: str, tmp_path: Path) -> None:
    if backend == "langgraph":
        pytest.importorskip("langgraph")
    settings, path = _sqlite_settings(backend, tmp_path, _enc({"k1": K1}, "k1"))
    old = f"enc-old-{uuid.uuid4().hex[:8]}"
    assert await _run_flow(settings, old) == EXPECTED
    rotated = _with(settings, _enc({"k1": K1, "k2": K2}, "k2"))
    result, _ = await _read(rotated, old)
    assert result == EXPECTED
    new = f"enc-new-{uuid.uuid4().hex[:8]}"
    assert await _run_flow(rotated, new) == EXPECTED
    rows = repr(_sqlite_rows(path))
    assert f"{PREFIX}k2:" in rows and f"{PREFIX}k1:" in rows
    # Without k1, the old run fails clearly; the new one still reads.
    only_k2 = _with(settings, _enc({"k2": K2}, "k2"))
    with pytest.raises(PayloadKeyError, match="'k1'"):
        await _read(only_k2, old)
    result, _ = await _read(only_k2, new)
    assert result == EXPECTED


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_wrong_or_missing_key_fails_clearly_and_changes_nothing(
    backend: str, tmp_path: Path
) -> None:
    if backend == "langgraph":
        pytest.importorskip("langgraph")
    settings, path = _sqlite_settings(backend, tmp_path, _enc({"k1": K1}, "k1"))
    id = f"enc-wrong-{uuid.uuid4().hex[:8]}"
    async with await bridge.connect(settings) as client, client.worker([flow]):
        await client.start(flow, SECRET, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
    before = _sqlite_rows(path)
    wrong = _with(settings, _enc({"k1": K2}, "k1"))
    missing = _with(settings, None)
    # A different key under the journal's key id is refused when the client opens the
    # journal, before it can seal anything with it.
    with pytest.raises(PayloadKeyError, match="'k1'") as info:
        await bridge.connect(wrong)
    assert K1 not in str(info.value) and K2 not in str(info.value)
    # Without keys, reading a sealed payload is refused, naming the key to configure.
    async with await bridge.connect(missing) as client:
        with pytest.raises(PayloadKeyError, match="'k1'"):
            await client.history(id)
        with pytest.raises(PayloadKeyError, match="'k1'"):
            await client.result(id, timeout=1)
    assert _sqlite_rows(path) == before
    # A worker without the key must not decide anything: it fails to load the run, which
    # stays as it was (its step rows unchanged, never recorded as failed).
    async with await bridge.connect(missing) as client:
        # The signal wakes the run, so the worker does try to run it.
        await client.signal(id, "more", f"{SECRET}-signal")
        woken = _sqlite_rows(path)
        with contextlib.suppress(PayloadKeyError):
            async with client.worker([flow]):
                await asyncio.sleep(1.5)
    after = _sqlite_rows(path)
    steps = "bridge_lg_steps" if backend == "langgraph" else "bridge_steps"
    runs = "bridge_lg_runs" if backend == "langgraph" else "bridge_workflows"
    assert after[steps] == woken[steps]
    assert [r[:6] for r in after[runs]] == [r[:6] for r in woken[runs]]
    assert "FAILED" not in repr(after[runs])
    # With the right key the run carries on and ends with the secret intact.
    async with await bridge.connect(settings) as client, client.worker([flow]):
        assert await client.result(id, timeout=60) == EXPECTED


# -- PostgreSQL: the sql journal's tables, the langgraph journal's and its checkpoints ------
def _pg_dump(url: str) -> tuple[list[str], bytes]:
    """Every row of every table in the database, as bytes (bytea columns raw)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    out: list[bytes] = []
    try:
        with engine.connect() as conn:
            tables = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            for t in tables:
                for row in conn.exec_driver_sql(f'SELECT * FROM "{t}"'):
                    for v in row:
                        if isinstance(v, (bytes, memoryview)):
                            out.append(bytes(v))
                        else:
                            out.append(str(v).encode())
    finally:
        engine.dispose()
    return tables, b"\n".join(out)


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_no_plaintext_in_the_postgres_tables(backend: str, pg_url: str) -> None:
    if backend == "langgraph":
        pytest.importorskip("langgraph")
        pytest.importorskip("langgraph.checkpoint.postgres")
    settings = {
        "backend": backend,
        backend: fast_sql(pg_url),
        "encryption": _enc({"k1": K1}, "k1"),
    }
    id = f"enc-pg-{backend}-{uuid.uuid4().hex[:8]}"
    assert await _run_flow(settings, id) == EXPECTED
    tables, dumped = _pg_dump(pg_url)
    if backend == "langgraph":
        assert {"bridge_lg_runs", "checkpoints", "checkpoint_writes"} <= set(tables)
    else:
        assert "bridge_workflows" in tables
    assert PREFIX.encode() in dumped
    assert SECRET.encode() not in dumped
    result, history = await _read(settings, id)
    assert result == EXPECTED and SECRET in repr(history)


# -- Temporal: the run's history ------------------------------------------------------------
async def test_no_plaintext_in_the_temporal_history(temporal_settings: dict[str, Any]) -> None:
    pytest.importorskip("temporalio")
    settings = {**temporal_settings, "encryption": _enc({"k1": K1}, "k1")}
    id = f"enc-temporal-{uuid.uuid4().hex}"
    assert await _run_flow(settings, id) == EXPECTED
    async with await bridge.connect(settings) as client:
        raw = await _temporal_history_bytes(client, id)
        history = await client.history(id)
    assert raw and SECRET.encode() not in raw
    assert SECRET in repr(history)
    # After a rotation the old run still reads.
    async with await bridge.connect(_with(settings, _enc({"k1": K1, "k2": K2}, "k2"))) as client:
        assert await client.result(id, timeout=10) == EXPECTED
    # Without the key: a clear error, not garbage.
    async with await bridge.connect(_with(settings, _enc({"k1": K2}, "k1"))) as client:
        with pytest.raises(PayloadKeyError, match="'k1'"):
            await client.result(id, timeout=10)
    # The control: the same run without encryption leaves the secret in the history, so
    # the search above does see payloads.
    plain = _with(settings, None)
    control = f"enc-temporal-plain-{uuid.uuid4().hex}"
    assert await _run_flow(plain, control) == EXPECTED
    async with await bridge.connect(plain) as client:
        assert SECRET.encode() in await _temporal_history_bytes(client, control)
        # and an encrypting client still reads the plaintext run
    async with await bridge.connect(settings) as client:
        assert await client.result(control, timeout=10) == EXPECTED


async def _temporal_history_bytes(client: bridge.Client, id: str) -> bytes:
    """Every event of the run's history, serialized as Temporal stores it."""
    from temporalio.client import Client

    backend: Any = client.backend
    tclient: Client = await backend.client()
    history = await tclient.get_workflow_handle(id).fetch_history()
    return history.to_json().encode() + b"".join(e.SerializeToString() for e in history.events)


def test_is_sealed() -> None:
    assert is_sealed(PREFIX + "k1:AAAA") and not is_sealed('"x"') and not is_sealed(None)


# -- the CLI decrypts with the configured keys ---------------------------------------------
async def test_cli_result_and_history_decrypt_with_the_configured_keys(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    settings, _ = _sqlite_settings("sql", tmp_path, _enc({"k1": K1}, "k1"))
    id = f"enc-cli-{uuid.uuid4().hex[:8]}"
    assert await _run_flow(settings, id) == EXPECTED
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    base.update(
        PYTHONPATH=str(ROOT),
        BRIDGE_BACKEND="sql",
        BRIDGE_SQL_URL=settings["sql"]["url"],
        ENC_TEST_KEY_K1=K1,
    )
    keyed = {
        **base,
        "BRIDGE_ENCRYPTION_KEYS": json.dumps({"k1": "env:ENC_TEST_KEY_K1"}),
        "BRIDGE_ENCRYPTION_CURRENT": "k1",
    }

    def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = cli(keyed, "result", id)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == EXPECTED
    history = cli(keyed, "history", id)
    assert history.returncode == 0, history.stderr
    assert SECRET in history.stdout
    refused = cli(base, "result", id)
    assert refused.returncode != 0
    assert "'k1'" in refused.stderr and "[encryption]" in refused.stderr
    assert K1 not in refused.stderr + refused.stdout


# -- the migration router's shadow store -----------------------------------------------------
def test_shadow_answers_are_sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.migrate._shadow_store import Plan, ShadowStore
    from bridge.migrate.compare import Step

    path = tmp_path / "routes.db"
    ring = _ring({"k1": K1}, "k1")
    store = ShadowStore(f"sqlite:///{path}", codec=ring)
    step = Step(index=0, kind="activity", name="enc_shout", args={"secret": SECRET}, result=SECRET)
    plan = Plan(shadow_id="sh-1", workflow_id="w", workflow="enc_flow", ignore=(), steps={0: step})
    try:
        store.begin(plan, primary_engine="sql", candidate_engine="langgraph")
        store.finish("sh-1", status="mismatched", first_step=0, diff=f"result {SECRET} != x")
        read = store.plan("sh-1")
        record = store.get("sh-1")
    finally:
        store.close()
    assert read is not None and read.steps[0].result == SECRET
    assert record is not None and SECRET in record.diff
    assert SECRET.encode() not in _sqlite_bytes(path)
    # Without the key the answers are refused, naming the key.
    monkeypatch.setattr("bridge.encryption._last_loaded", None)
    bare = ShadowStore(f"sqlite:///{path}")
    try:
        with pytest.raises(PayloadKeyError, match="'k1'"):
            bare.plan("sh-1")
    finally:
        bare.close()


# -- failure messages --------------------------------------------------------------------
@bridge.activity(name="enc_refuse", retry=bridge.RetryPolicy(max_attempts=1))
async def refuse(secret: str) -> str:
    raise ValueError(f"refused {secret}")


@bridge.workflow(name="enc_failing")
async def failing(ctx: bridge.Context, secret: str) -> str:
    return await ctx.run(refuse, secret)


async def _run_failing(settings: dict[str, Any], id: str) -> str:
    async with await bridge.connect(settings) as client, client.worker([failing]):
        await client.start(failing, SECRET, id=id)
        with pytest.raises(bridge.WorkflowFailedError) as info:
            await client.result(id, timeout=60)
    return str(info.value)


async def test_failure_messages_are_sealed_in_sqlite(tmp_path: Path) -> None:
    settings, path = _sqlite_settings("sql", tmp_path, _enc({"k1": K1}, "k1"))
    message = await _run_failing(settings, f"enc-fail-{uuid.uuid4().hex[:8]}")
    assert SECRET in message
    assert SECRET.encode() not in _sqlite_bytes(path)


async def test_failure_messages_are_sealed_in_the_temporal_history(
    temporal_settings: dict[str, Any],
) -> None:
    pytest.importorskip("temporalio")
    settings = {**temporal_settings, "encryption": _enc({"k1": K1}, "k1")}
    id = f"enc-temporal-fail-{uuid.uuid4().hex}"
    message = await _run_failing(settings, id)
    assert SECRET in message
    async with await bridge.connect(settings) as client:
        raw = await _temporal_history_bytes(client, id)
    assert raw and SECRET.encode() not in raw


async def test_a_temporal_client_or_worker_with_a_wrong_key_is_refused_up_front(
    temporal_settings: dict[str, Any],
) -> None:
    """The namespace keeps a key check per key id: a process whose key under k1 is not the
    one is refused when it connects, before it seals a signal no worker could open (which
    would block the run) or takes a workflow task; the run then completes untouched."""
    pytest.importorskip("temporalio")
    settings = {**temporal_settings, "encryption": _enc({"k1": K1}, "k1")}
    wrong = _with(settings, _enc({"k1": K2}, "k1"))
    id = f"enc-temporal-wrong-{uuid.uuid4().hex}"
    async with await bridge.connect(settings) as client, client.worker([flow]):
        await client.start(flow, SECRET, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
    with pytest.raises(PayloadKeyError, match="'k1'"):
        async with await bridge.connect(wrong) as bad:
            await bad.signal(id, "more", "sealed with the wrong key")
    with pytest.raises(PayloadKeyError, match="'k1'"):
        async with await bridge.connect(wrong) as bad, bad.worker([flow]):
            await asyncio.sleep(0.5)
    # A second key, new to the namespace, is recorded beside k1 and accepted.
    rotated = _with(settings, _enc({"k1": K1, "k2": K2}, "k2"))
    async with await bridge.connect(rotated) as client, client.worker([flow]):
        assert (await client.describe(id)).status is bridge.Status.WAITING
        await client.signal(id, "more", f"{SECRET}-signal")
        assert await client.result(id, timeout=30) == EXPECTED


async def test_a_client_without_the_key_still_lists_the_temporal_namespace(
    temporal_settings: dict[str, Any],
) -> None:
    """Temporal lists a whole namespace: a client without the key (a team's CLI, another
    service) must still list it, sealed memos and all, instead of failing on the first run."""
    pytest.importorskip("temporalio")
    settings = {**temporal_settings, "encryption": _enc({"k1": K1}, "k1")}
    id = f"enc-temporal-list-{uuid.uuid4().hex}"
    async with await bridge.connect(settings) as client, client.worker([flow]):
        await client.start(flow, SECRET, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
    async with await bridge.connect(temporal_settings) as keyless:
        for _ in range(50):  # Temporal's visibility store shows a run a moment later
            listed = {d.id: d for d in await keyless.list(limit=1000)}
            if id in listed:
                break
            await asyncio.sleep(0.2)
    assert listed[id].name == "enc_flow"
