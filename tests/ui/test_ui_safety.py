"""`bridge ui` is safe by default: localhost only unless a token guards it, the token on
every request, actions only as JSON, and no database password on any page."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

import bridge
from tests.conftest import fast_sql
from tests.ui import ui_wfs
from tests.ui.conftest import UiServer, write_toml

pytestmark = pytest.mark.timeout(120)

TOKEN = "ui-test-token-0123456789abcdef"
PASSWORD = "S3cretPwMarker"


@pytest.fixture
def sql_only(tmp_path: Path) -> dict[str, Any]:
    settings = {"backend": "sql", "sql": fast_sql(f"sqlite:///{tmp_path}/journal.db")}
    write_toml(tmp_path, settings)
    return settings


def test_a_non_local_bind_without_a_token_is_refused(
    sql_only: dict[str, Any], ui_server: UiServer
) -> None:
    proc = ui_server.start(host="0.0.0.0", wait=False)
    try:
        assert proc.wait(60) == 1
    except subprocess.TimeoutExpired:
        pytest.fail("bridge ui served a non-local bind without a token")
    log = ui_server.log.read_text()
    assert "error: bridge ui --host 0.0.0.0 can be reached from other machines" in log
    assert "BRIDGE_UI_TOKEN" in log


def test_a_short_token_is_refused(sql_only: dict[str, Any], ui_server: UiServer) -> None:
    proc = ui_server.start(host="0.0.0.0", token="short", wait=False)
    assert proc.wait(60) == 1
    assert "BRIDGE_UI_TOKEN is 5 characters long" in ui_server.log.read_text()


def test_every_request_to_a_non_local_bind_needs_the_token(
    sql_only: dict[str, Any], ui_server: UiServer
) -> None:
    ui_server.start(host="0.0.0.0", token=TOKEN)
    url = ui_server.url
    for path in ("/", "/run?id=x", "/migrations", "/api/runs", "/static/ui.js"):
        assert httpx.get(f"{url}{path}").status_code == 401, path
        wrong = httpx.get(f"{url}{path}", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401, path
    refused = httpx.post(f"{url}/api/cancel", json={"id": "x"})
    assert refused.status_code == 401
    assert "token is required" in refused.json()["error"]

    good = httpx.get(f"{url}/api/runs", headers={"authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200 and good.json()["runs"] == []
    # ?token= once (the link an operator opens) sets a cookie the page's requests carry.
    first = httpx.get(f"{url}/?token={TOKEN}")
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with httpx.Client(base_url=url, cookies=first.cookies) as session:
        assert session.get("/api/migrations").status_code == 200
        # Actions need it too: with it, a cancel of an unknown run is a 404, not a 401.
        assert session.post("/api/cancel", json={"id": "no-such-run"}).status_code == 404


def test_a_local_bind_refuses_foreign_host_names_and_non_json_actions(
    sql_only: dict[str, Any], ui_server: UiServer
) -> None:
    ui_server.start()
    url = ui_server.url
    assert httpx.get(f"{url}/api/runs").status_code == 200
    # DNS rebinding: another site's name that resolves to 127.0.0.1.
    rebound = httpx.get(f"{url}/api/runs", headers={"host": "attacker.example:80"})
    assert rebound.status_code == 403
    # A form post from another site's page cannot be JSON without a CORS preflight.
    form = httpx.post(f"{url}/api/cancel", data={"id": "x"})
    assert form.status_code == 415


async def test_no_page_shows_a_database_password(
    tmp_path: Path, ui_server: UiServer, browser: Any
) -> None:
    """An engine whose URL holds a password: the pages name it with the password masked,
    and its connection error (whatever the engine says) is masked too."""
    secret_url = f"postgresql+psycopg://test:{PASSWORD}@127.0.0.1:5432/test"
    settings = {
        "backend": "sql",
        "sql": fast_sql(f"sqlite:///{tmp_path}/journal.db"),
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
        "engines": {"legacy": {"backend": "sql", "sql": {"url": secret_url}}},
        "migrate": {"ui_nap": {"from": "legacy", "to": "sql", "ramp": 100}},
    }
    write_toml(tmp_path, settings)
    async with await bridge.connect(settings) as client:
        await client.start(ui_wfs.nap, 0.0, id="ui-nap-secret")
        async with (await client.router.client("sql")).worker([ui_wfs.nap]):
            assert await client.result("ui-nap-secret", timeout=30) == "rested"
    ui_server.start()
    page = await browser.new_page()
    for path in ("/", "/run?id=ui-nap-secret", "/migrations"):
        await page.goto(f"{ui_server.url}{path}")
        await page.locator("#engines b").first.wait_for(timeout=30_000)
        # "live · updated ..." or "not updated: ..." once the page's first request ended.
        await page.locator("#live", has_text="updated").wait_for(timeout=30_000)
        html = await page.content()
        assert PASSWORD not in html, path
        assert "postgresql+psycopg://test:***@127.0.0.1:5432/test" in html, path
    for path in ("/api/config", "/api/runs", "/api/run?id=ui-nap-secret", "/api/migrations"):
        body = httpx.get(f"{ui_server.url}{path}").text
        assert PASSWORD not in body, path
    runs = httpx.get(f"{ui_server.url}/api/runs").json()
    assert [r["id"] for r in runs["runs"]] == ["ui-nap-secret"]
    assert PASSWORD not in json.dumps(runs["engines"])
