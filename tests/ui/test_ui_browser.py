"""`bridge ui` in a real browser, over a migration from sql to a Temporal dev server.

The runs are started through the routing client (`bridge.connect()` with rules), their
workers run in this process, and `bridge ui` runs as its own process on the same
bridge.toml; headless chromium then reads what the pages show and acts on them.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.migrate import shadow
from tests.conftest import fast_sql
from tests.ui import ui_wfs
from tests.ui.conftest import UiServer, copy_for_docs, write_toml

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

ORDER_STEPS = ["ui_reserve", "ui_flaky_charge", "sleep", "ui_label", "approve"]


def _settings(tmp_path: Path, temporal: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend": "sql",
        "sql": fast_sql(f"sqlite:///{tmp_path}/journal.db"),
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
        "engines": {
            "temporal": temporal,
            "next": {"backend": "sql", "sql": fast_sql(f"sqlite:///{tmp_path}/next.db")},
        },
        "migrate": {
            "ui_order": {"from": "sql", "to": "temporal", "ramp": 50},
            "ui_quote": {"from": "sql", "to": "next", "shadow": True},
        },
    }


def _ids(client: Any, tag: str) -> dict[str, str]:
    """A new run id for each engine of the ui_order rule (the ramp is by id)."""
    found: dict[str, str] = {}
    while len(found) < 2:
        run_id = f"ui-{tag}-{uuid.uuid4().hex[:10]}"
        found.setdefault(client.router.choose("ui_order", run_id), run_id)
    return found


async def _until(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _waiting(client: bridge.Client, run_id: str) -> bool:
    return (await client.describe(run_id)).waiting_for == "approve"


async def _shadow_mismatch(client: Any, tmp_path: Path) -> str:
    """A ui_quote run on sql, then its shadow on `next` with changed code: mismatched."""
    quote_id = f"ui-quote-{uuid.uuid4().hex[:10]}"
    sql = await client.router.client("sql")
    async with sql.worker([ui_wfs.quote]):
        await client.start(ui_wfs.quote, "widget", 1200, id=quote_id)
        assert await client.result(quote_id, timeout=60) == {"item": "widget", "amount": 1200}
    ui_wfs.MARKUP["cents"] = 99  # the candidate's code adds a markup: step 0's args differ
    try:
        async with (await client.router.client("next")).worker([ui_wfs.quote]):
            outcomes = await shadow.drain(timeout=60)
    finally:
        ui_wfs.MARKUP["cents"] = 0
    assert [(o.workflow_id, o.status) for o in outcomes] == [(quote_id, shadow.MISMATCHED)]
    return quote_id


async def test_runs_timeline_signal_and_migration_pages(
    tmp_path: Path,
    temporal_settings: dict[str, Any],
    ui_server: UiServer,
    browser: Any,
    artefacts: Path,
) -> None:
    settings = _settings(tmp_path, temporal_settings)
    write_toml(tmp_path, settings)
    client = await bridge.connect(settings)
    try:
        quote_id = await _shadow_mismatch(client, tmp_path)
        runs = _ids(client, "order")
        sql, temporal = await client.router.client("sql"), await client.router.client("temporal")
        workflows = [ui_wfs.order, ui_wfs.label]
        async with sql.worker(workflows), temporal.worker(workflows):
            for n, run_id in enumerate(runs.values()):
                await client.start(ui_wfs.order, f"o{n}", 500 + n, id=run_id)
            for run_id in runs.values():
                await _until(lambda r=run_id: _waiting(client, r), f"{run_id} to wait")

            ui_server.start()
            page = await browser.new_page(viewport={"width": 1280, "height": 860})

            # -- the runs page lists both engines' runs ----------------------------------
            await page.goto(f"{ui_server.url}/?search=ui-order-")
            for engine, run_id in runs.items():
                row = page.locator(f'#runs tr[data-id="{run_id}"]')
                await row.wait_for(timeout=30_000)
                assert await row.locator("td.engine").inner_text() == engine
                assert "WAITING" in await row.inner_text()
            assert "waiting 2" in (await page.locator("#counts").inner_text()).replace("\n", " ")
            shot = artefacts / "runs.png"
            await page.set_viewport_size({"width": 1280, "height": 520})
            await page.screenshot(path=str(shot), full_page=True)
            await page.set_viewport_size({"width": 1280, "height": 860})
            copy_for_docs(shot, "ui-runs.png")

            # -- each run's timeline, then a signal from its page ------------------------
            for engine, run_id in runs.items():
                await page.goto(f"{ui_server.url}/run?id={run_id}")
                steps = page.locator("#steps tbody tr")
                await page.locator('#steps tr[data-name="approve"]').wait_for(timeout=30_000)
                names = [await r.get_attribute("data-name") for r in await steps.all()]
                assert names == ORDER_STEPS, (engine, names)
                flaky = page.locator('#steps tr[data-name="ui_flaky_charge"]')
                assert await flaky.locator("td.attempts").inner_text() == "2"
                retry = await flaky.locator(".retry").inner_text()
                assert "attempt 1 failed, retried: ConnectionError: payment gateway" in retry
                assert await page.locator("svg.chart g.bar").count() == len(ORDER_STEPS)
                assert "approve" in await page.locator("#pending").inner_text()
                assert await page.locator('dd[data-field="engine"]').inner_text() == engine
                if engine == "temporal":
                    shot = artefacts / "run-waiting.png"
                    await page.screenshot(path=str(shot), full_page=True)

                # The signal field is filled with what the run waits for.
                assert await page.locator("#signal-name").input_value() == "approve"
                await page.fill("#signal-payload", '{"ok": true, "by": "ui"}')
                await page.click("#send-signal")
                await page.locator("#confirm").wait_for()
                await page.click("#confirm-yes")
                flash = page.locator("#action-result .flash.ok")
                await flash.wait_for(timeout=30_000)
                assert f"signal 'approve' sent to {run_id}" in await flash.inner_text()
                # The run resumes and completes; the page sees it by itself.
                status = page.locator('dd[data-field="status"] .badge.COMPLETED')
                await status.wait_for(timeout=60_000)
                await page.locator('#steps tr[data-name="ui_ship"]').wait_for(timeout=30_000)
                result = await client.result(run_id, timeout=30)
                assert result["shipped"] == f"shipped o{list(runs).index(engine)} (approved by ui)"
                assert '"shipped"' in await page.locator("#output").inner_text()
                if engine == "temporal":
                    await page.screenshot(path=str(artefacts / "run.png"), full_page=True)

        # -- the migrations page: the ramp, the engines, the shadow's diff -----------------
        await page.goto(f"{ui_server.url}/migrations")
        order_card = page.locator('section[data-workflow="ui_order"]')
        await order_card.wait_for(timeout=30_000)
        assert "ramp 50%" in await order_card.locator(".rule").inner_text()
        for engine in ("sql", "temporal"):
            row = order_card.locator(f'tr[data-engine="{engine}"]')
            await row.wait_for()
            assert await row.locator("td.finished").inner_text() == "1"
        assert await order_card.locator("svg.chart path").count() == 4
        quote_card = page.locator('section[data-workflow="ui_quote"]')
        diff = quote_card.locator("pre.diff-text")
        await diff.wait_for(timeout=30_000)
        text = await diff.inner_text()
        assert "step 0 (activity 'ui_price'): arguments differ" in text
        assert "cents: 1200 (primary) != 1299 (candidate)" in text
        assert "mismatched" in await quote_card.locator(f'tr[data-id="{quote_id}"]').inner_text()
        shot = artefacts / "migrations.png"
        await page.screenshot(path=str(shot), full_page=True)
        copy_for_docs(shot, "ui-migrations.png")
    finally:
        await client.close()
