"""Database passwords never leave the process: errors, the CLI's output (defect 3 of #13)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bridge._redact import mask
from bridge.errors import StorageError, WorkflowNotFoundError
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "journal at postgresql+psycopg://postgres:S3cret@127.0.0.1:1/db: opening failed",
            "journal at postgresql+psycopg://postgres:***@127.0.0.1:1/db: opening failed",
        ),
        ("'postgresql://app:p/a:ss@db/x'", "'postgresql://app:***@db/x'"),
        ("nats://:tok3n@broker:4222", "nats://:***@broker:4222"),
        (
            "postgresql://db/x?sslmode=require&password=S3cret",
            "postgresql://db/x?sslmode=require&password=***",
        ),
        ("host=db user=app password=S3cret dbname=x", "host=db user=app password=*** dbname=x"),
        # Nothing secret: left as it is.
        ("sqlite:////var/lib/bridge/journal.db", "sqlite:////var/lib/bridge/journal.db"),
        (
            "postgresql+psycopg://postgres@127.0.0.1/test",
            "postgresql+psycopg://postgres@127.0.0.1/test",
        ),
        ("user@example.com said x=1", "user@example.com said x=1"),
    ],
)
def test_mask(text: str, masked: str) -> None:
    assert mask(text) == masked


def test_every_bridge_error_is_masked_when_made() -> None:
    url = "postgresql+psycopg://postgres:S3cret@db.internal/prod"
    for exc in (StorageError(f"journal at {url}: opening failed"), WorkflowNotFoundError("x", url)):
        assert "S3cret" not in str(exc) and "postgres:***@db.internal" in str(exc)
        assert "S3cret" not in repr(exc)


def test_the_cli_never_prints_the_password() -> None:
    """The real `bridge` command against a port where nothing listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_SQL_URL"] = "postgresql+psycopg://postgres:S3cret@127.0.0.1:1/db"
    env["BRIDGE_BACKEND"] = "sql"
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "bridge"), "status", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "S3cret" not in proc.stdout + proc.stderr
    assert "postgres:***@127.0.0.1:1/db" in proc.stderr, proc.stderr
