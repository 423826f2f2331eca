"""`owner_dead` answers True only when an owner's death is proven (issue 13, defect 2)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from bridge.journal.owner import owner_dead, owner_id

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/ns/pid"), reason="needs Linux's /proc"
)

PRINT_OWNER = "from bridge.journal.owner import owner_id; print(owner_id(), flush=True)"


def _field(owner: str, key: str, value: str) -> str:
    """`owner` with one of its `key=value` fields (or the host, key "host") replaced."""
    if key == "host":
        return value + owner[owner.index(":") :]
    changed, n = re.subn(rf":{key}=[^:]*", f":{key}={value}", owner)
    assert n == 1
    return changed


def _child(*command: str) -> tuple[subprocess.Popen[str], str]:
    """A live process that printed its owner id (and then waits to be killed)."""
    proc = subprocess.Popen(
        [*command, sys.executable, "-c", PRINT_OWNER + "; import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    owner = proc.stdout.readline().strip()
    proc.stdout.close()
    return proc, owner


def test_owner_id_records_host_pid_start_namespace_and_boot() -> None:
    owner = owner_id()
    assert len(owner) <= 255  # the journal's lease_owner column
    assert f":pid={os.getpid()}:" in owner
    assert f":pidns={os.stat('/proc/self/ns/pid').st_ino}:" in owner
    with open("/proc/sys/kernel/random/boot_id") as fh:
        assert f":boot={fh.read().strip()}:" in owner
    assert owner_id() != owner  # a nonce per worker in one process


def test_this_process_and_a_live_child_are_alive() -> None:
    assert owner_dead(owner_id()) is False
    proc, owner = _child()
    try:
        assert owner_dead(owner) is False
    finally:
        proc.kill()
        proc.wait()


def test_an_exited_owner_is_dead_and_a_zombie_too() -> None:
    proc, owner = _child()
    proc.send_signal(signal.SIGKILL)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert owner_dead(owner) is True
    proc.wait()
    assert owner_dead(owner) is True


def test_a_reused_pid_is_not_the_owner() -> None:
    proc, owner = _child()
    try:
        # The same pid with another start time: the owner died and its pid was reused.
        assert owner_dead(_field(owner, "start", "1")) is True
        assert owner_dead(_field(owner_id(), "start", "1")) is True
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("key", "value"),
    [("host", "another-host"), ("boot", "0" * 32), ("pidns", "1"), ("start", "")],
)
def test_a_dead_pid_elsewhere_cannot_be_proven_dead(key: str, value: str) -> None:
    proc, owner = _child()
    proc.kill()
    proc.wait()
    assert owner_dead(owner) is True
    # The same gone pid on another host, boot or PID namespace, or without a start time:
    # nothing here can say anything about it.
    assert owner_dead(_field(owner, key, value)) is False


def test_old_and_foreign_owner_ids_are_never_declared_dead() -> None:
    proc, owner = _child()
    proc.kill()
    proc.wait()
    host = owner.split(":")[0]
    # The format of earlier releases, still in journals on disk: a pid, no namespace.
    assert owner_dead(f"{host}:{proc.pid}:0a1b2c3d") is False
    assert owner_dead("") is False
    assert owner_dead("not an owner id") is False
    assert owner_dead(f"{host}:pid=x:start=1") is False


def test_an_earlier_release_reads_no_pid_from_a_new_owner_id() -> None:
    # What releases before this one did with `host:pid:nonce`: a bare number second.
    second = owner_id().split(":")[1]
    assert not second.isdigit()


def test_an_owner_in_another_pid_namespace_is_not_dead_here() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for `unshare --pid`")
    proc, owner = _child("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")
    try:
        if not owner:
            pytest.skip("`unshare --pid` is not permitted here")
        # Its pid (1 or 2 in its namespace) means another process, or none, here.
        assert owner_dead(owner) is False
        assert owner_dead(_field(owner, "pidns", str(os.stat("/proc/self/ns/pid").st_ino)))
    finally:
        proc.kill()
        proc.wait()
