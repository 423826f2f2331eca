"""Is a SQLite journal file intact? `check_integrity` asks SQLite itself.

SQLite reads a damaged page only when a query touches it, so a journal with garbage in its
middle can serve `bridge list` and a worker for a long time, then fail in the middle of a
run, or return wrong rows. `PRAGMA quick_check` reads every page and checks the b-tree
structure, the record formats and the free list (what `integrity_check` does, minus the
cross-check of indexes against tables, which is the slow part). It reads the file in time
proportional to its size, so it belongs where a journal is opened for work (the worker) or
checked on purpose (`bridge doctor`), not in every command.

PostgreSQL journals are not checked here: the server checksums and recovers its own pages.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

from bridge.errors import StorageError

__all__ = ["check_integrity"]

#: How many problems SQLite lists at most; the first few say enough.
_MAX_PROBLEMS = 10


def check_integrity(journal: str | URL | Engine) -> str:
    """Check the SQLite journal at `journal` (a URL or an engine on it); what was checked,
    for a report. Raises StorageError naming the file and SQLite's findings when it is
    damaged or unreadable. A PostgreSQL journal is left to its server.

    The file is opened read-only, so the check writes nothing, creates nothing and works on
    a journal the caller may not write to.
    """
    url = journal.url if isinstance(journal, Engine) else make_url(journal)
    if url.get_backend_name() != "sqlite":
        return (
            f"{url.get_backend_name()} journal at {url.host or 'localhost'}: checked by its server"
        )
    database = url.database or ""
    if database in ("", ":memory:"):
        raise StorageError(f"{url!s} is an in-memory database, not a journal file")
    path = Path(database)
    if not path.is_file():
        raise StorageError(
            f"no SQLite journal at {path}: check the url setting (it names a file that "
            f"does not exist)"
        )
    try:
        # mode=ro: no write, no new file. The WAL is read too, so pages not yet written
        # back to the file are checked as SQLite will read them.
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(f"PRAGMA quick_check({_MAX_PROBLEMS})").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        # "file is not a database", "database disk image is malformed" (a damaged header
        # or schema page stops SQLite before the check can start).
        raise _damaged(path, [str(exc)]) from None
    # One row per problem, some of several lines under a "*** in database main ***" title.
    lines = (line.strip() for r in rows for line in str(r[0]).splitlines())
    problems = [line for line in lines if line and line != "ok" and not line.startswith("***")]
    if problems:
        raise _damaged(path, problems)
    return f"SQLite journal {path}: PRAGMA quick_check found no damage"


def _damaged(path: Path, problems: list[str]) -> StorageError:
    found = "; ".join(problems)
    return StorageError(
        f"the SQLite journal {path} is damaged; SQLite's integrity check says: {found}. "
        f"Stop every worker on it and restore the file from a backup (or recover what is "
        f"readable with `sqlite3 {path} .recover`), then run `bridge doctor` again"
    )
