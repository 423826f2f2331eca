"""`ScriptedModel`: an offline model that replays a scripted conversation.

Examples, tests and benchmarks run with no network: each step of the script is one model
response (text, tool calls with their arguments, a handoff, a structured output), optionally
failing its first attempts with an HTTP error to exercise retries.

Which step answers a call is read from the conversation itself, not from a counter in
memory: the items this model produced carry ids naming their turn, so the next turn is one
past the highest turn in the input. A worker that resumes a run after a crash therefore
answers turn 3 with step 3, although it never served turns 1 and 2. Invocations are counted
(in a SQLite file when `counter_path` is given, so a test can read the count across a killed
process) to prove that a resumed run did not call the model again for finished turns.

A ScriptedModel registers itself under its `name`; an agent given the model object (or its
name) reaches it in the worker by that name, as a real model is reached by its name.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
from agents import (
    Agent,
    AgentOutputSchemaBase,
    FunctionTool,
    Handoff,
    Model,
    ModelProvider,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    Tool,
    TResponseInputItem,
    Usage,
)
from agents.items import TResponseStreamEvent
from agents.util._transforms import transform_string_function_style
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam

from adapters.openai_agents._errors import ScriptError
from adapters.openai_agents._stream_events import events_of
from bridge import codec
from bridge.activity import activity_info, registering
from bridge.errors import OutsideWorkflowError

__all__ = [
    "Reply",
    "Script",
    "ScriptedCall",
    "ScriptedModel",
    "ScriptedModelProvider",
    "registered_scripted_model",
]


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Call:
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """One scripted model response. `a + b` is one response with the items of both."""

    items: tuple[_Text | _Call, ...]
    fail_first: int = 0
    status: int = 429

    def __add__(self, other: Reply) -> Reply:
        return Reply(items=self.items + other.items, fail_first=self.fail_first, status=self.status)


#: A step of a script: a reply, or a function of the model's input items returning one (for
#: a model that must react to what the tools said).
Step = Reply | Callable[[list[Any]], Reply]


class Script:
    """Builders for script steps."""

    @staticmethod
    def text(text: str) -> Reply:
        """An assistant message (the final answer, for an agent without an output type)."""
        return Reply(items=(_Text(text),))

    @staticmethod
    def tool_call(tool: str | FunctionTool, arguments: Mapping[str, Any] | str = "{}") -> Reply:
        """A call of `tool`; `arguments` as a mapping (JSON-encoded) or raw JSON text (to
        script a model that sends arguments that do not parse or do not fit the schema)."""
        name = tool.name if isinstance(tool, FunctionTool) else tool
        text = arguments if isinstance(arguments, str) else codec.dumps(dict(arguments))
        return Reply(items=(_Call(name, text),))

    @staticmethod
    def tool_calls(*calls: tuple[str | FunctionTool, Mapping[str, Any] | str]) -> Reply:
        """Several tool calls in one response (the SDK runs them concurrently)."""
        items: tuple[_Text | _Call, ...] = ()
        for tool, arguments in calls:
            items += Script.tool_call(tool, arguments).items
        return Reply(items=items)

    @staticmethod
    def handoff(
        to: Agent[Any] | Handoff[Any, Any] | str, arguments: Mapping[str, Any] | str = "{}"
    ) -> Reply:
        """A handoff to agent `to` (an Agent, a Handoff, or an agent's name)."""
        if isinstance(to, Handoff):
            name = to.tool_name
        else:
            agent_name = to.name if isinstance(to, Agent) else to
            name = transform_string_function_style(f"transfer_to_{agent_name}")
        return Script.tool_call(name, arguments)

    @staticmethod
    def output(value: Any) -> Reply:
        """A structured final output: `value` as the JSON the agent's output type reads."""
        return Script.text(codec.encode(value, type(value), where="scripted output"))

    @staticmethod
    def failing(reply: Reply, *, times: int = 1, status: int = 429) -> Reply:
        """`reply`, after `times` attempts that fail with HTTP `status` (429: rate limited)."""
        if times < 1:
            raise ScriptError(f"Script.failing: times must be >= 1, got {times}")
        return Reply(items=reply.items, fail_first=times, status=status)


@dataclass(frozen=True)
class ScriptedCall:
    """What one invocation was asked (kept in memory, in the process that served it).
    `workflow_id` is the run whose model-call activity asked ("" outside a workflow)."""

    workflow_id: str
    turn: int
    input: list[Any]
    system_instructions: str | None
    tools: list[str] = field(default_factory=list)
    handoffs: list[str] = field(default_factory=list)
    output_type: str | None = None


_REGISTRY: dict[str, ScriptedModel] = {}


def registered_scripted_model(name: str | None) -> ScriptedModel | None:
    return _REGISTRY.get(name) if name is not None else None


class ScriptedModel(Model):
    """An Agents SDK `Model` that answers turn n with step n of `steps`.

    `name` is how a worker finds it (latest registration of a name wins); `counter_path`
    makes `invocations()` readable from another process.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        name: str = "scripted",
        counter_path: str | Path | None = None,
    ) -> None:
        self.steps = list(steps)
        self.name = name
        self.counter_path = str(counter_path) if counter_path is not None else None
        self.calls: list[ScriptedCall] = []
        self._turn_id = re.compile(rf"^(?:call-)?{re.escape(name)}-t(\d+)-")
        if registering.get():
            _REGISTRY[name] = self

    # -- counting ---------------------------------------------------------------------------
    def invocations(self, workflow_id: str | None = None) -> list[int]:
        """The turn of every invocation so far, in order, of one workflow run or of all (all
        processes when counting to a file, this process otherwise)."""
        if self.counter_path is None:
            return [
                c.turn for c in self.calls if workflow_id is None or c.workflow_id == workflow_id
            ]
        with _counter(self.counter_path) as conn:
            rows = conn.execute(
                "SELECT turn FROM calls WHERE model = ? AND (? IS NULL OR run = ?) ORDER BY seq",
                (self.name, workflow_id, workflow_id),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def call_counts(self, workflow_id: str | None = None) -> Counter[int]:
        """How many times each turn was asked for (retries included)."""
        return Counter(self.invocations(workflow_id))

    def _count(self, run: str, turn: int) -> int:
        """Record one invocation of `turn` by run `run`; how many that run has made of it,
        this one included (what `Script.failing` counts)."""
        if self.counter_path is None:
            return sum(1 for c in self.calls if c.workflow_id == run and c.turn == turn)
        with _counter(self.counter_path) as conn:
            conn.execute(
                "INSERT INTO calls (model, run, turn, at) VALUES (?, ?, ?, ?)",
                (self.name, run, turn, time.time()),
            )
            row = conn.execute(
                "SELECT COUNT(*) FROM calls WHERE model = ? AND run = ? AND turn = ?",
                (self.name, run, turn),
            ).fetchone()
        return int(row[0])

    # -- the model --------------------------------------------------------------------------
    def _turn(self, input: str | list[Any]) -> int:
        if isinstance(input, str):
            return 0
        latest = -1
        for item in input:
            if not isinstance(item, Mapping):
                continue
            for key in ("id", "call_id"):
                value = item.get(key)
                match = self._turn_id.match(value) if isinstance(value, str) else None
                if match:
                    latest = max(latest, int(match.group(1)))
        return latest + 1

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        items = [input] if isinstance(input, str) else list(input)
        turn = self._turn(input)
        run = _workflow_id()
        self.calls.append(
            ScriptedCall(
                workflow_id=run,
                turn=turn,
                input=items,
                system_instructions=system_instructions,
                tools=[t.name for t in tools],
                handoffs=[h.tool_name for h in handoffs],
                output_type=output_schema.name() if output_schema is not None else None,
            )
        )
        attempt = self._count(run, turn)
        if turn >= len(self.steps):
            raise ScriptError(
                f"ScriptedModel {self.name!r} has {len(self.steps)} steps but was asked for turn "
                f"{turn + 1}; add steps to its script (the last input item was "
                f"{codec.dumps(codec.to_jsonable(items[-1:]))[:200]})"
            )
        step = self.steps[turn]
        reply = step(items) if callable(step) else step
        if attempt <= reply.fail_first:
            raise _status_error(reply.status, f"scripted failure {attempt} of {reply.fail_first}")
        return ModelResponse(
            output=[self._item(turn, k, it) for k, it in enumerate(reply.items)],
            usage=Usage(requests=1),
            response_id=None,
        )

    def _item(self, turn: int, k: int, item: _Text | _Call) -> Any:
        if isinstance(item, _Text):
            return ResponseOutputMessage(
                id=f"{self.name}-t{turn}-m{k}",
                content=[ResponseOutputText(text=item.text, type="output_text", annotations=[])],
                role="assistant",
                status="completed",
                type="message",
            )
        return ResponseFunctionToolCall(
            id=f"{self.name}-t{turn}-c{k}",
            call_id=f"call-{self.name}-t{turn}-{k}",
            name=item.name,
            arguments=item.arguments,
            type="function_call",
            status="completed",
        )

    async def stream_response(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[TResponseStreamEvent]:
        """The scripted answer as the Responses API would stream it (one text delta per
        part), so `Runner.run_streamed` works offline."""
        for event in events_of(await self.get_response(*args, **kwargs), model=self.name):
            yield event


class ScriptedModelProvider(ModelProvider):
    """A provider answering every model name with `model` (or by name from a mapping)."""

    def __init__(self, model: ScriptedModel | Mapping[str, ScriptedModel]) -> None:
        self._model = model

    def get_model(self, model_name: str | None) -> Model:
        if isinstance(self._model, ScriptedModel):
            return self._model
        if model_name in self._model:
            return self._model[model_name]
        raise ScriptError(
            f"ScriptedModelProvider has no model named {model_name!r} "
            f"(it has: {', '.join(sorted(self._model)) or 'none'})"
        )


def _workflow_id() -> str:
    try:
        return activity_info().workflow_id
    except OutsideWorkflowError:
        return ""


def _status_error(status: int, message: str) -> openai.APIStatusError:
    """The error the OpenAI client raises for HTTP `status`, so retries are classified by the
    same code as for a real model."""
    response = httpx.Response(status, request=httpx.Request("POST", "https://scripted.invalid"))
    cls: type[openai.APIStatusError] = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        404: openai.NotFoundError,
        429: openai.RateLimitError,
    }.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return cls(message, response=response, body=None)


class _counter:
    """A short-lived connection to the counter file (WAL: workers in several processes)."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS calls ("
            " seq INTEGER PRIMARY KEY, model TEXT NOT NULL, run TEXT NOT NULL,"
            " turn INTEGER NOT NULL, at REAL)"
        )

    def __enter__(self) -> sqlite3.Connection:
        return self._conn

    def __exit__(self, *exc: object) -> None:
        self._conn.close()
