"""Who holds a lease, and when a worker may call that holder dead without waiting for its lease.

A journal worker writes `owner_id()` into every lease it takes. Another worker that finds
the lease in the table asks `owner_dead(owner)` to recover a crashed worker's runs at once
instead of after the lease runs out. A wrong True takes a live worker's runs and executes
their steps twice, so the answer is True only when death is *proven*:

- same kernel boot (`/proc/sys/kernel/random/boot_id`): a pid means nothing across a reboot
  or on another machine;
- same PID namespace (the inode of `/proc/self/ns/pid`): containers on one host, even with
  host networking and one hostname, each number their processes from 1, so pid 7 in the
  checker's namespace says nothing about pid 7 in another;
- same hostname, as a plain sanity check;
- and then the pid is gone (`kill(pid, 0)`, which looks in the caller's namespace), or
  `/proc/<pid>` shows a zombie or a process started at another time than the owner (its
  start time, in clock ticks after boot, is recorded with its pid, so a reused pid is not
  mistaken for the owner). `/proc` is read only when it was mounted for our own namespace
  (`/proc/self` is our pid).

Anything else (another host, another container, no /proc, a permission error, an owner id
this module cannot read) answers False and the lease simply expires.

The id format is `HOST:pid=P:start=T:pidns=N:boot=B:n=NONCE`. Its second field is not a bare
number, so an older release's check (which read `HOST:PID:NONCE` and looked the pid up in its
own namespace, the defect this module fixes) never declares a new owner dead during a rolling
upgrade. Ids in that old format, still in journals on disk, are read as unprovable: they
carry no namespace or boot, and a pid alone cannot prove anything. Their leases expire.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

__all__ = ["owner_id", "owner_dead"]

_PROC_SELF_STAT = "/proc/self/stat"
_PID_NAMESPACE = "/proc/self/ns/pid"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class _Identity:
    """What identifies one process among all processes that may share a journal."""

    host: str
    pid: int
    start: str | None
    pidns: str | None
    boot: str | None


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _stat_fields(pid: int | str) -> list[str] | None:
    """`/proc/<pid>/stat` after the command name (which may hold spaces and parentheses):
    index 0 is the state, index 19 the start time in clock ticks after boot."""
    text = _read(f"/proc/{pid}/stat")
    if text is None or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields if len(fields) > 19 else None


def _pid_namespace() -> str | None:
    try:
        return str(os.stat(_PID_NAMESPACE).st_ino)
    except OSError:
        return None


def _me() -> _Identity:
    # Read each time, not cached: a forked child has its own pid and start time.
    fields = _stat_fields("self")
    return _Identity(
        host=socket.gethostname(),
        pid=os.getpid(),
        start=fields[19] if fields else None,
        pidns=_pid_namespace(),
        boot=_read(_BOOT_ID),
    )


def owner_id() -> str:
    """This process's lease-owner id (fits the journal's 255-character owner column)."""
    me = _me()
    return (
        f"{me.host}:pid={me.pid}:start={me.start or ''}:pidns={me.pidns or ''}"
        f":boot={me.boot or ''}:n={os.urandom(4).hex()}"
    )


def _parse(owner: str) -> _Identity | None:
    """The identity in an id written by `owner_id`, or None (old format, foreign, damaged)."""
    host, _, rest = owner.partition(":")
    fields: dict[str, str] = {}
    for part in rest.split(":"):
        key, sep, value = part.partition("=")
        if not sep:
            return None  # the old `HOST:PID:NONCE` format, or not ours at all
        fields[key] = value
    pid = fields.get("pid", "")
    if not pid.isdigit():
        return None
    return _Identity(
        host=host,
        pid=int(pid),
        start=fields.get("start") or None,
        pidns=fields.get("pidns") or None,
        boot=fields.get("boot") or None,
    )


def _proc_is_ours(me: _Identity) -> bool:
    """True when /proc was mounted for this process's PID namespace (in a container that
    kept the host's /proc, `/proc/<pid>` would name the host's processes)."""
    try:
        return os.readlink("/proc/self") == str(me.pid)
    except OSError:
        return False


def owner_dead(owner: str) -> bool:
    """True only when `owner`'s process is proven gone; False when alive or unknowable."""
    other = _parse(owner)
    if other is None or other.start is None:
        return False
    me = _me()
    if me.pidns is None or me.boot is None or me.start is None:
        return False  # no /proc here: only lease expiry can tell
    if (other.host, other.boot, other.pidns) != (me.host, me.boot, me.pidns):
        return False  # another machine, boot or container: its pids are not ours to read
    if other.pid == me.pid:
        return other.start != me.start  # our pid, reused from a dead owner
    try:
        os.kill(other.pid, 0)  # in our namespace, which is the owner's: checked above
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, run by another user
    fields = _stat_fields(other.pid) if _proc_is_ours(me) else None
    if fields is None:
        return False  # exists, but /proc cannot say whether it is still the owner
    state, start = fields[0], fields[19]
    # A zombie (killed, not yet reaped by its parent) still has its /proc entry.
    return state in ("Z", "X") or start != other.start
