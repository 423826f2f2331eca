"""Workflows of the search-attribute tests, importable by Temporal's sandbox."""

from __future__ import annotations

import bridge


@bridge.activity(name="search_note")
async def note(text: str) -> str:
    return text


@bridge.workflow(name="search_order")
async def order(ctx: bridge.Context, customer: str, upgrade_to: str) -> str:
    """Takes a step; with `upgrade_to`, moves itself to that customer (amount 99) before a
    second step; then waits for `go`, so a test can restart the worker while it waits."""
    await ctx.run(note, customer)
    if upgrade_to:
        ctx.upsert_search_attributes({"customer": upgrade_to, "amount": 99})
    await ctx.run(note, "after")
    await ctx.wait_for_signal("go")
    return customer


@bridge.workflow(name="search_retag")
async def retag(ctx: bridge.Context, tags: list[str]) -> None:
    """Replaces its tags and drops its customer, then ends."""
    ctx.upsert_search_attributes({"tags": tags, bridge.SearchAttribute.keyword("customer"): None})
    await ctx.run(note, "retagged")
