"""`bridge.RetryAfter(seconds)`: the next attempt starts that long after, instead of after the
retry policy's (here much shorter) backoff, on every engine; the attempt still counts."""

from __future__ import annotations

import time
import uuid

import pytest

import bridge

STAMPS: list[float] = []

QUICK = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01, backoff=1.0)


@bridge.activity(name="t_retry_after_call", retry=QUICK)
async def call_provider() -> str:
    STAMPS.append(time.monotonic())
    if bridge.activity_info().attempt == 1:
        raise bridge.RetryAfter(1.0, "429 Too Many Requests")
    return "answered"


@bridge.workflow(name="t_retry_after")
async def asks_provider(ctx: bridge.Context) -> str:
    return await ctx.run(call_provider)


async def test_retry_after_waits_as_asked(client: bridge.Client) -> None:
    STAMPS.clear()
    rid = f"retry-after-{uuid.uuid4()}"
    async with client.worker([asks_provider]):
        assert await client.execute(asks_provider, id=rid, timeout=30) == "answered"
    assert len(STAMPS) == 2
    gap = STAMPS[1] - STAMPS[0]
    # The policy alone would retry after 0.01 s.
    assert 0.9 <= gap < 5, f"the retry came {gap:.2f}s after the 429"
    history = [e.to_dict() for e in await client.history(rid)]
    assert "RetryAfter" in str(history)


def test_retry_after_needs_seconds() -> None:
    with pytest.raises(ValueError, match="seconds"):
        bridge.RetryAfter(-1)


def test_an_openai_429_with_retry_after_becomes_a_retry_after() -> None:
    """The agents adapter's model call turns a rate-limited answer's Retry-After (or
    OpenAI's retry-after-ms) into RetryAfter, so the run waits what the provider asked."""
    import httpx
    import openai

    from adapters.openai_agents._model_activity import _raise_for_status

    def limited(headers: dict[str, str]) -> openai.RateLimitError:
        request = httpx.Request("POST", "https://api.invalid/v1/responses")
        response = httpx.Response(429, request=request, headers=headers)
        return openai.RateLimitError("slow down", response=response, body=None)

    with pytest.raises(bridge.RetryAfter) as info:
        _raise_for_status(limited({"retry-after": "2"}), "gpt-x")
    assert info.value.seconds == 2.0
    with pytest.raises(bridge.RetryAfter) as info:
        _raise_for_status(limited({"retry-after-ms": "1500"}), "gpt-x")
    assert info.value.seconds == 1.5
    # No header: the ordinary retry (the policy's backoff).
    with pytest.raises(openai.RateLimitError):
        _raise_for_status(limited({}), "gpt-x")
