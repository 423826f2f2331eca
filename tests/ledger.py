"""The tests' side-effect ledger: now part of the harness, re-exported for existing tests."""

from bridge.testing.ledger import (
    Entry,
    Ledger,
    counts,
    counts_by_activity,
    duplicates,
    entries,
    record,
    record_once,
)

__all__ = [
    "Entry",
    "Ledger",
    "counts",
    "counts_by_activity",
    "duplicates",
    "entries",
    "record",
    "record_once",
]
