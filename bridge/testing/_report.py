"""The capability report: per backend, which scenarios passed, failed or were skipped because
the backend does not declare a capability they need. Printed after the run and written as
JSON, so a CI job can keep it and compare engines (or versions of one engine) over time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CapabilityReport"]

PASSED, FAILED = "passed", "failed"
SKIPPED_BY_CAPABILITY, SKIPPED = "skipped-by-capability", "skipped"


@dataclass
class Outcome:
    status: str
    detail: str = ""
    seconds: float = 0.0


def _crash_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext.strip().splitlines()[-1] if report.longreprtext else ""


class CapabilityReport:
    def __init__(self, *, reference: str) -> None:
        self.reference = reference
        self._items: dict[str, tuple[str, str]] = {}  # nodeid -> (backend, scenario)
        self._capability_skips: dict[str, list[str]] = {}
        self.declared: dict[str, list[str]] = {}
        self.outcomes: dict[tuple[str, str], Outcome] = {}

    # -- filled in while the session runs -----------------------------------------------------
    def expect(self, nodeid: str, *, scenario: str, backend: str) -> None:
        self._items[nodeid] = (backend, scenario)

    def declare(self, backend: str, capabilities: frozenset[str]) -> None:
        self.declared[backend] = sorted(capabilities)

    def skipped_for(self, nodeid: str, lacking: list[str]) -> None:
        """The fixtures call this before skipping a scenario for lack of `lacking`."""
        self._capability_skips[nodeid] = lacking

    def record(self, report: pytest.TestReport) -> None:
        key = self._items.get(report.nodeid)
        if key is None:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.skipped and report.nodeid in self._capability_skips:
                lacking = self._capability_skips[report.nodeid]
                status, detail = SKIPPED_BY_CAPABILITY, "lacks " + ", ".join(lacking)
            else:
                status = PASSED if report.passed else FAILED if report.failed else SKIPPED
                detail = "" if report.passed else _crash_message(report)
            self.outcomes[key] = Outcome(status, detail, report.duration)
        elif report.when == "teardown" and report.failed:
            self.outcomes[key] = Outcome(FAILED, "teardown: " + _crash_message(report))

    # -- read after the session ---------------------------------------------------------------
    @property
    def ran(self) -> bool:
        return bool(self.outcomes)

    def backends(self) -> list[str]:
        return list(dict.fromkeys(b for b, _ in self.outcomes))

    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(s for _, s in self.outcomes))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "backends": {}}
        for backend in self.backends():
            rows = {s: o for (b, s), o in self.outcomes.items() if b == backend}
            out["backends"][backend] = {
                "declared_capabilities": self.declared.get(backend, []),
                "counts": {
                    status: sum(1 for o in rows.values() if o.status == status)
                    for status in (PASSED, FAILED, SKIPPED_BY_CAPABILITY, SKIPPED)
                },
                "scenarios": {
                    s: {"outcome": o.status, "detail": o.detail, "seconds": round(o.seconds, 3)}
                    for s, o in rows.items()
                },
            }
        return out

    def lines(self) -> list[str]:
        backends, scenarios = self.backends(), self.scenarios()
        width = max(len("scenario"), *(len(s) for s in scenarios))
        col = max(len(SKIPPED_BY_CAPABILITY), *(len(b) for b in backends)) + 2
        lines = ["scenario".ljust(width + 2) + "".join(b.ljust(col) for b in backends)]
        for s in scenarios:
            cells = [self.outcomes.get((b, s), Outcome("-")).status for b in backends]
            lines.append(s.ljust(width + 2) + "".join(c.ljust(col) for c in cells))
        lines.append("")
        for backend, data in self.as_dict()["backends"].items():
            counts = data["counts"]
            skips = [
                f"{s} ({o['detail']})"
                for s, o in data["scenarios"].items()
                if o["outcome"] == SKIPPED_BY_CAPABILITY
            ]
            lines.append(
                f"{backend}: {counts[PASSED]} passed, {counts[FAILED]} failed, "
                f"{counts[SKIPPED_BY_CAPABILITY]} skipped by capability, {counts[SKIPPED]} skipped"
                + (f"; by capability: {', '.join(skips)}" if skips else "")
            )
            for s, o in data["scenarios"].items():
                if o["outcome"] == FAILED:
                    first = (o["detail"].splitlines() or [""])[0]
                    lines.append(f"  FAILED {s}: {first[:300]}")
        return [line.rstrip() for line in lines]

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
