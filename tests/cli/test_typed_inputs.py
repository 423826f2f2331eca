"""Inputs given as JSON reach a workflow as its declared types (pydantic models, dataclasses,
typed containers): `bridge run/start` ARGS_JSON, `bridge compat --inputs` and the default
arguments of a `bridge.on(...)` start trigger. Run for real: `bridge` subprocesses on a
fresh SQLite journal, and a trigger applied to a real client."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import bridge
from bridge.bus import Event
from tests.conftest import settings_env

BRIDGE = str(Path(sys.executable).parent / "bridge")  # the console script

FLOWS = textwrap.dedent(
    """
    from dataclasses import dataclass

    from pydantic import BaseModel

    import bridge


    class Order(BaseModel):
        sku: str
        qty: int


    @dataclass
    class Line:
        name: str
        price: float


    @bridge.activity
    async def total(order: Order, lines: list[Line]) -> str:
        # Attribute access: a dict here would raise AttributeError.
        cost = order.qty * sum(line.price for line in lines)
        kinds = f"{type(order).__name__}, {type(lines[0]).__name__}"
        return f"{order.sku} x{order.qty} = {cost:g} ({kinds})"


    @bridge.workflow
    async def checkout(ctx: bridge.Context, order: Order, lines: list[Line]) -> str:
        return await ctx.run(total, order, lines)


    @bridge.workflow
    async def one_order(ctx: bridge.Context, order: Order) -> str:
        return f"{order.sku}:{order.qty}:{type(order).__name__}"
    """
)

ARGS = '[{"sku": "tea", "qty": 3}, [{"name": "cup", "price": 1.5}, {"name": "lid", "price": 0.5}]]'


def _bridge(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRIDGE, *args],
        cwd=cwd,
        env=env or _env(cwd),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _env(cwd: Path) -> dict[str, str]:
    env = settings_env({"backend": "sql", "sql": {"url": f"sqlite:///{cwd}/journal.db"}})
    env["BRIDGE_SQL_POLL_INTERVAL"] = "0.02"
    env["COLUMNS"] = "200"
    env["PYTHONPATH"] = f"{cwd}:{env['PYTHONPATH']}"
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "typed_flows.py").write_text(FLOWS)
    return tmp_path


def test_run_decodes_args_json_with_the_declared_types(project: Path) -> None:
    done = _bridge(project, "run", "typed_flows:checkout", ARGS, "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "tea x3 = 6 (Order, Line)"
    # One JSON object is the only argument, decoded as that parameter's model.
    done = _bridge(project, "run", "typed_flows:one_order", '{"sku": "mug", "qty": 1}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "mug:1:Order"


def test_start_then_run_attaches_with_the_same_typed_args(project: Path) -> None:
    started = _bridge(project, "start", "typed_flows:checkout", ARGS, "--id", "order-1")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "order-1"
    # The same JSON again is the same arguments (a retried start), so `run` attaches to the
    # run `start` created and works it; other arguments would be an id conflict.
    done = _bridge(project, "run", "typed_flows:checkout", ARGS, "--id", "order-1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "tea x3 = 6 (Order, Line)"
    history = _bridge(project, "history", "order-1", "--json")
    started_event = json.loads(history.stdout)[0]
    assert started_event["args"] == {
        "order": {"sku": "tea", "qty": 3},
        "lines": [{"name": "cup", "price": 1.5}, {"name": "lid", "price": 0.5}],
    }


def test_bad_args_json_names_the_parameter_and_the_field(project: Path) -> None:
    done = _bridge(project, "start", "typed_flows:one_order", '{"sku": "mug", "qty": "many"}')
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "workflow 'one_order', parameter 'order'" in message
    assert "is not a Order" in message and "qty" in message
    assert "cannot encode a value of type dict" not in message

    done = _bridge(project, "start", "typed_flows:one_order", '[{"sku": "a", "qty": 1}, 2]')
    assert done.returncode == 1
    assert "takes 1 positional argument (order), but ARGS_JSON gives 2" in done.stderr


def test_compat_inputs_are_decoded_with_the_declared_types(
    project: Path, langgraph_settings: dict[str, Any]
) -> None:
    inputs = project / "orders.jsonl"
    inputs.write_text(
        f"{ARGS}\n"
        + json.dumps(
            {"args": [{"sku": "pot", "qty": 1}, [{"name": "lid", "price": 2}]], "label": "pot"}
        )
        + "\n"
    )
    env = _env(project)
    env["BRIDGE_LANGGRAPH_URL"] = langgraph_settings["langgraph"]["url"]
    done = _bridge(
        project,
        "compat",
        "typed_flows:checkout",
        "--inputs",
        str(inputs),
        "--to",
        "langgraph",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    comparisons = report["candidates"]["langgraph"]["comparisons"]
    assert [c["same"] for c in comparisons] == [True, True]
    assert [c["reference"]["status"] for c in comparisons] == ["COMPLETED", "COMPLETED"]
    # The decoded input is labelled with what was written, not an object's repr.
    assert comparisons[0]["label"] == json.dumps(json.loads(ARGS), sort_keys=True)
    assert comparisons[1]["label"] == "pot"


# -- a start trigger's default arguments ----------------------------------------------------
class Parcel(BaseModel):
    weight: int
    to: str


@dataclass
class Sender:
    name: str


@bridge.workflow(name="typed_inputs.ship")
async def ship(ctx: bridge.Context, parcel: Parcel) -> str:
    return f"{parcel.weight}kg to {parcel.to} ({type(parcel).__name__})"


@bridge.workflow(name="typed_inputs.senders")
async def senders(ctx: bridge.Context, names: list[Sender]) -> list[str]:
    return [f"{s.name}:{type(s).__name__}" for s in names]


async def test_trigger_default_args_are_decoded_with_the_declared_type(
    sql_settings: dict[str, Any],
) -> None:
    parcel_trigger = bridge.on("typed_inputs.parcel.v1", ship)
    sender_trigger = bridge.on("typed_inputs.senders.v1", senders)
    client = await bridge.connect(sql_settings)
    try:
        event = Event(
            id="p1", source="shop", type="typed_inputs.parcel.v1", data={"weight": 2, "to": "Oslo"}
        )
        await parcel_trigger.apply(event, client)
        await parcel_trigger.apply(event, client)  # a redelivery: the same run, same args
        listed = Event(
            id="s1", source="shop", type="typed_inputs.senders.v1", data=[{"name": "ann"}]
        )
        await sender_trigger.apply(listed, client)
        async with client.worker([ship, senders]):
            assert await client.result("shop/p1", timeout=30) == "2kg to Oslo (Parcel)"
            assert await client.result("shop/s1", timeout=30) == ["ann:Sender"]
        bad = Event(id="p2", source="shop", type="typed_inputs.parcel.v1", data={"weight": "x"})
        with pytest.raises(bridge.SerializationError, match=r"parameter 'parcel'.*shop/p2"):
            await parcel_trigger.apply(bad, client)
    finally:
        await client.close()
