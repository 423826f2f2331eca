"""The workflow features Temporal users rely on, written once against the neutral `bridge` API
and run the same way on sql, langgraph and temporal (issue #17).

One small workflow per feature; each docstring says what it shows and how a Temporal user
writes the same thing natively with `temporalio`:

- queries and updates (an "entity"): `greeting_entity`; `ctx.set_query_handler`,
  `ctx.set_update_handler(..., validator=)`
- waiting on several things: `greeting_collector`; `ctx.wait_for_signal([...])`,
  `ctx.wait_condition`
- child workflows: `onboard_account`; `ctx.start_child`, `ctx.execute_child`,
  `parent_close_policy`
- continue-as-new: `counter`; `ctx.continue_as_new`
- activity heartbeats: `upload_file`; `bridge.heartbeat`, `heartbeat_timeout`,
  `bridge.activity_info().heartbeat_details`
- cancellation: `export_table`; `client.cancel`, `except asyncio.CancelledError`,
  `ctx.compensate()`
- versioning: `SHIPPING_ORIGINAL`, `SHIPPING_PATCHED`, `SHIPPING_DEPRECATED`; `ctx.patched`,
  `ctx.deprecate_patch`
- execution timeout: `hold_seat`; `client.start(..., execution_timeout=)`

Offline: the stand-in services write a ledger file (`bridge.testing.ledger`) when a workflow
is given one, which is how the tests count side effects across attempts and engines. Names
carry the `features.` prefix. The three shipping definitions share one workflow name (three
deployments of the same code) and are not registered: a worker is given the one it runs.

Run one with e.g. `bridge run examples.temporal_features:counter '[25, 10]'`.

Nothing happens at import time: worker processes and Temporal's sandbox import this module.
"""

from __future__ import annotations

import asyncio
from typing import Any

import bridge
from bridge.testing import ledger
from bridge.workflow import WorkflowDefinition

__all__ = [
    "GREETINGS",
    "SHIPPING",
    "SHIPPING_DEPRECATED",
    "SHIPPING_ORIGINAL",
    "SHIPPING_PATCHED",
    "WORKFLOWS",
    "counter",
    "export_table",
    "greeting_collector",
    "greeting_entity",
    "hold_seat",
    "onboard_account",
    "upload_file",
]

#: Short intervals so the offline demo and the tests are quick; production would use seconds.
RETRY = bridge.RetryPolicy(max_attempts=3, initial_interval=0.05, backoff=2.0)


async def _record(ledger_path: str | None, key: str, activity: str) -> None:
    """Record one side effect of a stand-in service (nowhere when no ledger is given)."""
    if ledger_path:
        await asyncio.to_thread(ledger.record, ledger_path, key, activity)


# -- 1. queries and updates: a greeting "entity" ---------------------------------------------
#: The languages the stand-in translation service knows.
GREETINGS: dict[str, str] = {"en": "Hello", "de": "Hallo", "fr": "Bonjour", "es": "Hola"}


@bridge.activity(name="features.translate_greeting", retry=RETRY, side_effects=False)
async def translate_greeting(language: str) -> str:
    """The greeting word in `language` (a stand-in for a translation service)."""
    return GREETINGS[language]


def _supported_language(language: str) -> None:
    """The update's validator: refuses a language the translation service does not know,
    before anything is journaled."""
    if language not in GREETINGS:
        raise ValueError(f"unsupported language {language!r}; known: {', '.join(GREETINGS)}")


@bridge.workflow(name="features.greeting_entity")
async def greeting_entity(ctx: bridge.Context, name: str) -> str:
    """A long-lived greeting "entity": queries read it, an update changes it, a signal ends it.

    - query `greeting` answers the current greeting (`"Hello, Ann!"`), query `language` the
      language code; a query changes nothing;
    - update `set_language(code)` is validated first (an unknown language is refused with
      UpdateRejectedError and leaves no trace), then translates the greeting with an
      activity and answers the previous language;
    - signal `exit` ends the run with the final greeting.

    Natively on Temporal this is a class with `@workflow.query def greeting(self)`,
    `@workflow.update async def set_language(self, code)` plus `@set_language.validator`,
    `@workflow.signal def exit(self)` and a `run` that does
    `await workflow.wait_condition(lambda: self.exited)`; callers use
    `handle.query(...)`, `handle.execute_update(...)` and `handle.signal(...)`. Here handlers
    are functions closing over the workflow's locals, and `client.query`/`client.update`/
    `client.signal` call them by name.
    """
    state = {"language": "en", "word": GREETINGS["en"]}

    async def set_language(language: str) -> str:
        previous = state["language"]
        state["word"] = await ctx.run(translate_greeting, language)
        state["language"] = language
        return previous

    ctx.set_query_handler("greeting", lambda: f"{state['word']}, {name}!")
    ctx.set_query_handler("language", lambda: state["language"])
    ctx.set_update_handler("set_language", set_language, validator=_supported_language)
    await ctx.wait_for_signal("exit")
    return f"{state['word']}, {name}!"


# -- 2. waiting on several things: greetings until "exit" ------------------------------------
@bridge.activity(name="features.compose_greeting", retry=RETRY, side_effects=False)
async def compose_greeting(name: str) -> str:
    return f"Hello, {name}!"


@bridge.workflow(name="features.greeting_collector")
async def greeting_collector(ctx: bridge.Context) -> list[str]:
    """Greets everyone named by a `greet` signal until an `exit` signal; the result is every
    greeting, in the order the names arrived (three `greet` then `exit`: three greetings).

    One branch takes the first of either signal (`ctx.wait_for_signal(["greet", "exit"])`
    returns a `Signal(name, payload)`, so an `exit` sent without a payload is not a
    timeout); the other waits with `ctx.wait_condition` until there is a name to greet or
    the exit was asked for, greets the queue empty, and stops after the exit. Names that
    arrive together are all greeted before the run ends.

    Natively on Temporal the signal handlers append to `self.pending` / set `self.exit`,
    and `run` loops on `await workflow.wait_condition(lambda: self.pending or self.exit)`.
    Bridge workflows have no signal handlers, so the receiving branch plays their part and
    `ctx.gather` runs both branches together.

    Known defect: on langgraph this run stays WAITING on its condition after the first
    signal (tests/examples/test_temporal_features.py marks it xfail there).
    """
    pending: list[str] = []
    greetings: list[str] = []
    state = {"exit": False}
    ctx.set_query_handler("greetings", lambda: list(greetings))

    async def receive() -> None:
        while not state["exit"]:
            signal = await ctx.wait_for_signal(["greet", "exit"])
            if signal.name == "exit":
                state["exit"] = True
            else:
                pending.append(signal.payload)

    async def greet() -> None:
        while True:
            await ctx.wait_condition(lambda: bool(pending) or state["exit"])
            while pending:
                greetings.append(await ctx.run(compose_greeting, pending.pop(0)))
            if state["exit"]:
                return

    await ctx.gather(receive(), greet())
    return greetings


# -- 3. child workflows: onboarding a new account --------------------------------------------
@bridge.activity(name="features.provision", retry=RETRY)
async def provision(
    ledger_path: str | None, account: str, resource: str, *, idempotency_key: str
) -> str:
    """Create `resource` for `account` (offline: recorded once per call)."""
    await _record(ledger_path, idempotency_key, f"provision:{resource}")
    return f"{resource}:{account}"


@bridge.activity(name="features.send_email", retry=RETRY)
async def send_email(
    ledger_path: str | None, account: str, subject: str, *, idempotency_key: str
) -> str:
    await _record(ledger_path, idempotency_key, f"email:{subject}")
    return f"mail to {account}: {subject}"


@bridge.workflow(name="features.provision_resource")
async def provision_resource(
    ctx: bridge.Context, ledger_path: str | None, account: str, resource: str
) -> str:
    """Child: provisions one resource (a run of its own, with its own history and retries)."""
    return await ctx.run(provision, ledger_path, account, resource)


@bridge.workflow(name="features.welcome")
async def welcome(
    ctx: bridge.Context, ledger_path: str | None, account: str, resources: list[str]
) -> str:
    """Child: the welcome email listing what was provisioned."""
    return await ctx.run(send_email, ledger_path, account, f"welcome ({', '.join(resources)})")


@bridge.workflow(name="features.trial_reminder")
async def trial_reminder(ctx: bridge.Context, account: str, trial_days: float) -> str:
    """Child: waits up to the trial's length for a `converted` signal (the plan bought)."""
    plan = await ctx.wait_for_signal("converted", timeout=trial_days * 86400)
    if plan is None:
        return f"{account}: trial ended without a purchase"
    return f"{account} converted to {plan}"


@bridge.workflow(name="features.onboard_account")
async def onboard_account(
    ctx: bridge.Context, ledger_path: str | None, account: str
) -> dict[str, Any]:
    """A parent with three kinds of children: two run concurrently, one awaited at once, one
    that outlives its parent.

    - `mailbox` and `workspace` are started together with `ctx.start_child` (each start a
      journaled step; the handles are awaited with `ctx.gather`), so they provision in
      parallel; their default `parent_close_policy="terminate"` would end them if the
      parent ended first;
    - the welcome email is one `ctx.execute_child` (start and wait for the result);
    - the trial reminder is started with `parent_close_policy="abandon"`: it waits for the
      customer's purchase for 14 days, long after onboarding completed, and the parent's
      end leaves it running. The result names its id, which the caller signals.

    Natively on Temporal: `await workflow.start_child_workflow(Provision.run, ..., id=...)`
    for each handle, `await workflow.execute_child_workflow(Welcome.run, ...)`, and
    `parent_close_policy=ParentClosePolicy.ABANDON` on the reminder's start.
    """
    base = ctx.workflow_id
    mailbox = await ctx.start_child(
        provision_resource, ledger_path, account, "mailbox", id=f"{base}/mailbox"
    )
    workspace = await ctx.start_child(
        provision_resource, ledger_path, account, "workspace", id=f"{base}/workspace"
    )
    resources = await ctx.gather(mailbox.result(), workspace.result())
    email = await ctx.execute_child(welcome, ledger_path, account, resources, id=f"{base}/welcome")
    reminder = await ctx.start_child(
        trial_reminder, account, 14, id=f"{base}/trial", parent_close_policy="abandon"
    )
    return {"resources": resources, "welcome": email, "trial_reminder": reminder.id}


# -- 4. continue-as-new: a long counter with a bounded history -------------------------------
@bridge.activity(name="features.add_one", retry=RETRY, side_effects=False)
async def add_one(n: int) -> int:
    return n + 1


@bridge.workflow(name="features.counter")
async def counter(ctx: bridge.Context, target: int, every: int = 10, count: int = 0) -> int:
    """Counts to `target`, one activity per iteration, continuing as new every `every`
    iterations with the count so far; returns the final count. Query `count` reads it.

    Each run's history holds at most `every` steps, so replay time and memory stay bounded
    however long the loop (`client.result(id)` is the last run's result; `bridge history
    ID` shows the current run, whose start names the run it continued from).

    Natively on Temporal: `workflow.continue_as_new(args=[target, every, count])` (or
    when `workflow.info().is_continue_as_new_suggested()`).
    """
    ctx.set_query_handler("count", lambda: count)
    while count < target:
        count = await ctx.run(add_one, count)
        if count % every == 0 and count < target:
            ctx.continue_as_new(target, every, count)
    return count


# -- 5. activity heartbeats: an upload that resumes where a stuck attempt stopped -------------
@bridge.activity(name="features.upload_chunks", retry=RETRY, heartbeat_timeout=1.0)
async def upload_chunks(
    ledger_path: str | None, file: str, chunks: int, stall_at: int | None = None
) -> dict[str, Any]:
    """Upload `file` chunk by chunk, heartbeating the next chunk to send after each one.

    A retry starts at the chunk the failed attempt last reported
    (`bridge.activity_info().heartbeat_details`), so no chunk is sent twice. `stall_at` is
    test plumbing: the first attempt hangs before that chunk (a stuck connection) and stops
    heartbeating, so the 1 s heartbeat timeout fails it and the step is retried.
    """
    info = bridge.activity_info()
    resumed_from = int(info.heartbeat_details["next_chunk"]) if info.heartbeat_details else 0
    for chunk in range(resumed_from, chunks):
        if info.attempt == 1 and chunk == stall_at:
            await asyncio.sleep(60)  # hangs: no heartbeat, the engine gives up on it
        await asyncio.sleep(0.05)  # sending the chunk
        await _record(ledger_path, f"{file}:chunk-{chunk}", "upload_chunk")
        bridge.heartbeat({"next_chunk": chunk + 1})
    return {"file": file, "chunks": chunks, "attempt": info.attempt, "resumed_from": resumed_from}


@bridge.workflow(name="features.upload_file")
async def upload_file(
    ctx: bridge.Context, ledger_path: str | None, file: str, chunks: int, stall_at: int | None
) -> dict[str, Any]:
    """A long activity that proves it is alive and resumes where a stuck attempt stopped.

    `upload_chunks` declares `heartbeat_timeout=1.0` and calls `bridge.heartbeat(details)`
    after each chunk; an attempt silent for longer is failed with
    ActivityHeartbeatTimeoutError and retried at once (the retry policy's interval), and the
    retry reads the details last reported.

    Natively on Temporal: `activity.heartbeat({"next_chunk": n})` in the activity,
    `activity.info().heartbeat_details` in the retry, and
    `heartbeat_timeout=timedelta(seconds=1)` on `workflow.execute_activity`.
    """
    return await ctx.run(upload_chunks, ledger_path, file, chunks, stall_at)


# -- 6. cancellation: a long export cancelled from the client, cleaned up ----------------------
@bridge.activity(name="features.discard_export", retry=RETRY)
async def discard_export(ledger_path: str | None, export: str, *, idempotency_key: str) -> str:
    """The compensation of `open_export`: delete the half-written export."""
    await _record(ledger_path, idempotency_key, f"discard:{export}")
    return f"discarded {export}"


@bridge.activity(name="features.open_export", retry=RETRY, compensate=discard_export)
async def open_export(ledger_path: str | None, export: str, *, idempotency_key: str) -> str:
    """Create the export's file in the bucket (offline: recorded)."""
    await _record(ledger_path, idempotency_key, f"open:{export}")
    return f"s3://exports/{export}.csv"


@bridge.activity(name="features.copy_rows", retry=RETRY, heartbeat_timeout=5.0)
async def copy_rows(ledger_path: str | None, export: str, rows: int) -> int:
    """Copy `rows` rows, heartbeating after each; a cancellation arrives as CancelledError
    (an async activity; a sync one would get it from its next `bridge.heartbeat()`)."""
    await _record(ledger_path, f"{export}:copy-started", "copy_rows")
    row = 0
    try:
        for row in range(rows):
            await asyncio.sleep(0.05)
            bridge.heartbeat(row + 1)
    except asyncio.CancelledError:
        await asyncio.shield(_record(ledger_path, f"{export}:copy-cancelled", "copy_rows"))
        raise
    return rows


@bridge.workflow(name="features.export_table")
async def export_table(ctx: bridge.Context, ledger_path: str | None, export: str, rows: int) -> str:
    """A long heartbeating copy that the client may cancel; the run then cleans up.

    `client.cancel(id)` cancels the running `copy_rows` within about a second (it
    heartbeats, so it hears of it); the workflow sees `asyncio.CancelledError` at its
    `await`, runs its compensations (`ctx.compensate()`: `discard_export`, declared on
    `open_export`, each a journaled step) and re-raises, so the run ends CANCELLED and
    `result()` raises WorkflowCancelledError.

    Natively on Temporal: `handle.cancel()`, the activity heartbeating (it receives
    `asyncio.CancelledError` from a heartbeat's reply), and in the workflow
    `except asyncio.CancelledError:` around `workflow.execute_activity`, then the cleanup
    activity and `raise`.
    """
    location = await ctx.run(open_export, ledger_path, export)
    try:
        copied = await ctx.run(copy_rows, ledger_path, export, rows)
    except asyncio.CancelledError:
        await ctx.compensate()
        raise
    return f"{copied} rows exported to {location}"


# -- 7. versioning: patched, then deprecate_patch --------------------------------------------
@bridge.activity(name="features.reserve_stock", retry=RETRY, side_effects=False)
async def reserve_stock(order: str) -> str:
    return f"reserved {order}"


@bridge.activity(name="features.screen_fraud", retry=RETRY, side_effects=False)
async def screen_fraud(order: str) -> str:
    return f"screened {order}"


@bridge.activity(name="features.ship", retry=RETRY, side_effects=False)
async def ship(order: str) -> str:
    return f"shipped {order}"


async def _shipping_original(ctx: bridge.Context, order: str) -> list[str]:
    """Deployment 1: reserve, wait until the warehouse says `packed`, ship."""
    done = [await ctx.run(reserve_stock, order)]
    await ctx.wait_for_signal("packed")
    return [*done, await ctx.run(ship, order)]


async def _shipping_patched(ctx: bridge.Context, order: str) -> list[str]:
    """Deployment 2: a fraud screening after the reservation, behind `ctx.patched`.

    Runs that passed this point under deployment 1 answer False and keep the old path (their
    history has no screening); every run reaching it now answers True, records the patch
    and screens. Natively: `if workflow.patched("fraud-screening"):`.
    """
    done = [await ctx.run(reserve_stock, order)]
    if ctx.patched("fraud-screening"):
        done.append(await ctx.run(screen_fraud, order))
    await ctx.wait_for_signal("packed")
    return [*done, await ctx.run(ship, order)]


async def _shipping_deprecated(ctx: bridge.Context, order: str) -> list[str]:
    """Deployment 3, once no run on the old path is open: the new path only.

    `ctx.deprecate_patch` lets runs that recorded the patch under deployment 2 replay
    through here, and records nothing for new runs, so a later deployment may drop the call
    altogether once every run started before this one has ended. Natively:
    `workflow.deprecate_patch("fraud-screening")`.
    """
    done = [await ctx.run(reserve_stock, order)]
    ctx.deprecate_patch("fraud-screening")
    done.append(await ctx.run(screen_fraud, order))
    await ctx.wait_for_signal("packed")
    return [*done, await ctx.run(ship, order)]


#: The name the three deployments of the shipping workflow share.
SHIPPING = "features.shipping"
SHIPPING_ORIGINAL = WorkflowDefinition(_shipping_original, name=SHIPPING)
SHIPPING_PATCHED = WorkflowDefinition(_shipping_patched, name=SHIPPING)
SHIPPING_DEPRECATED = WorkflowDefinition(_shipping_deprecated, name=SHIPPING)


# -- 8. execution timeout: a seat held until paid, at most so long ----------------------------
@bridge.activity(name="features.release_seat", retry=RETRY)
async def release_seat(ledger_path: str | None, seat: str, *, idempotency_key: str) -> str:
    """The compensation of `reserve_seat`: give the seat back."""
    await _record(ledger_path, idempotency_key, f"release:{seat}")
    return f"released {seat}"


@bridge.activity(name="features.reserve_seat", retry=RETRY, compensate=release_seat)
async def reserve_seat(ledger_path: str | None, seat: str, *, idempotency_key: str) -> str:
    await _record(ledger_path, idempotency_key, f"reserve:{seat}")
    return f"reserved {seat}"


@bridge.workflow(name="features.hold_seat")
async def hold_seat(ctx: bridge.Context, ledger_path: str | None, seat: str) -> str:
    """Hold a seat until the `paid` signal names the card; the caller bounds the whole run
    with `client.start(hold_seat, ..., execution_timeout=600)`.

    Past the timeout the run ends FAILED and `result()` raises WorkflowFailedError with
    `error_type == "WorkflowTimeoutError"`, on every engine. The run sees
    `asyncio.CancelledError` at its wait first, so the `except` gives the seat back before
    it fails (on Temporal too: the bridge cancels the code with a workflow timer at the
    deadline and sets Temporal's own execution timeout a grace period later).

    Natively on Temporal: `client.start_workflow(..., execution_timeout=timedelta(...))`,
    the run failing with `WorkflowFailureError` whose cause is a timeout, and no code of
    the run running after it (the server ends it).
    """
    await ctx.run(reserve_seat, ledger_path, seat)
    try:
        card = await ctx.wait_for_signal("paid")
    except asyncio.CancelledError:
        await ctx.compensate()
        raise
    return f"seat {seat} paid with {card}"


#: Every registered workflow of this module, for `client.worker(WORKFLOWS)` (the shipping
#: deployments are given to a worker one at a time).
WORKFLOWS = [
    greeting_entity,
    greeting_collector,
    provision_resource,
    welcome,
    trial_reminder,
    onboard_account,
    counter,
    upload_file,
    export_table,
    hold_seat,
]
