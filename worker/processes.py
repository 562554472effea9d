"""Is a consumer's process still there? Answered from ids that say where each consumer runs.

A consumer id is ``host:pid-namespace:pid:parent-nonce``: on the same host and in the same pid
namespace, a dead consumer is known at once (its pid is gone or a zombie) instead of after its
liveness entry expires; and when its parent (the worker that forked it) is gone too, the whole
worker died, which tells a kill of the worker from a message that killed one pool process.
"""

from __future__ import annotations

import os
import socket
import uuid


def _namespace() -> str:
    """The pid namespace of this process: pids are comparable only inside one namespace."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def consumer_id() -> str:
    """A unique id that says where the consumer runs: ``host:pid-namespace:pid:parent-nonce``
    (the parent is the worker process that forked this pool process)."""
    return (f"{socket.gethostname()}:{_namespace()}:{os.getpid()}:"
            f"{os.getppid()}-{uuid.uuid4().hex[:8]}")


def _local_pids(consumer: str) -> tuple[int, int | None] | None:
    """(pid, parent pid or None) of a consumer on this host and pid namespace, else None."""
    try:
        host, namespace, pid, tail = consumer.rsplit(":", 3)
        number = int(pid)
        parent = int(tail.split("-", 1)[0]) if "-" in tail else None
    except ValueError:
        return None
    if host != socket.gethostname() or namespace != _namespace():
        return None
    return number, parent


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """True for a process that has died but not been reaped yet (``kill -9`` just now)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def gone_locally(consumer: str) -> bool:
    """True when ``consumer`` ran on this host and pid namespace and its process is gone."""
    pids = _local_pids(consumer)
    return pids is not None and pids[0] != os.getpid() and _dead(pids[0])


def worker_gone_locally(consumer: str) -> bool:
    """True when the worker that ran ``consumer`` died as a whole (its parent is gone too): a
    kill of the worker, not a message that killed one pool process."""
    pids = _local_pids(consumer)
    return (pids is not None and pids[1] is not None and pids[1] != os.getpid()
            and _dead(pids[0]) and _dead(pids[1]))
