"""Workflows the schedule tests start (importable by Temporal's sandbox and the CLI)."""

from __future__ import annotations

import bridge


@bridge.workflow
async def tick(ctx: bridge.Context, label: str) -> str:
    """Ends at once: a schedule of it never overlaps."""
    return label


@bridge.workflow
async def hold(ctx: bridge.Context, label: str) -> str:
    """Stays open until signalled "release": a schedule of it overlaps."""
    await ctx.wait_for_signal("release")
    return label
