"""One writer per output folder: `output_lock(out_dir, command=...)`.

A command that writes into an output folder (`run_experiment`, `run_suite`) holds
`out_dir/.anode-lock` while it runs: a JSON file naming its process (pid, host, command, start
time). A second process that wants the folder while that process lives is refused at once with
`OutputLocked` (a `ConfigError`: the CLI exits with status 2), naming the other process. A lock
left by a process that no longer runs on this host (killed, crashed) is taken over, with a log
line. Within one process the lock is re-entrant: nested calls on the same folder (e.g. a command
that holds it and calls `run_experiment`) go through.

The lock file is created atomically with its content (written to a temporary file, then
hard-linked into place, which fails when a lock exists; or, where hard links are not available,
`O_CREAT | O_EXCL`), and removed when the outermost holder exits.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from anode.lab.experiments.schema import ConfigError

__all__ = ["LOCK_FILE", "OutputLocked", "check_unlocked", "holds_lock", "lock_holder", "locks_output", "output_lock"]

F = TypeVar("F", bound=Callable[..., Any])

#: The lock's file name inside the output folder.
LOCK_FILE = ".anode-lock"

#: Folders this process holds, by resolved path: [depth of nesting, token, pid].
_HELD: dict[Path, list[Any]] = {}
_HELD_GUARD = threading.Lock()


class OutputLocked(ConfigError):
    """Another live process is writing into the output folder (the message names it)."""


def _key(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir).resolve()


def _process_start(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (Linux), to tell a reused pid apart; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return stat.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


def lock_holder(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of the process holding `out_dir`'s lock, or None when the folder has no lock file.

    Arguments:
        out_dir: the output folder.

    Returns:
        The lock's JSON record (pid, host, command, started, token, ...); `{"unreadable": True}`
        for a file that is not a lock record (e.g. one cut short by a crash).
    """
    path = Path(out_dir) / LOCK_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {"unreadable": True}
    try:
        record = json.loads(text)
    except ValueError:
        return {"unreadable": True}
    return record if isinstance(record, dict) else {"unreadable": True}


def _is_stale(record: dict[str, Any]) -> bool:
    """True when the lock's process is known to be gone: same host, and its pid is not alive (or
    is alive but started at another time: a reused pid)."""
    if record.get("unreadable"):
        return True
    if record.get("host") != socket.gethostname():
        return False  # another machine's process: its liveness cannot be checked from here
    pid = record.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return True
    started = record.get("pid_start")
    return started is not None and _process_start(pid) not in (None, started)


def _describe(record: dict[str, Any]) -> str:
    return (f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}, "
            f"command: {record.get('command')}")


def holds_lock(out_dir: str | os.PathLike[str]) -> bool:
    """Whether this process holds `out_dir`'s lock (inside an `output_lock` on it)."""
    with _HELD_GUARD:
        held = _HELD.get(_key(out_dir))
        return held is not None and held[2] == os.getpid()


def _refusal(out_dir: Path, record: dict[str, Any]) -> OutputLocked:
    return OutputLocked(
        f"{out_dir} is being written by another anode process ({_describe(record)}); two writers would mix their "
        f"results. Wait for it to finish (or stop it), or use another output folder. If that process is gone "
        f"(e.g. it ran on another machine), delete {out_dir / LOCK_FILE}."
    )


def check_unlocked(out_dir: str | os.PathLike[str]) -> None:
    """Refuse at once when another live process holds `out_dir`'s lock (nothing is written).

    Arguments:
        out_dir: the output folder.

    Returns:
        None (no lock, a stale one, or this process's own).

    Raises:
        OutputLocked: another live process holds it; the message names it (pid, host, command, start time).
    """
    if holds_lock(out_dir):
        return
    record = lock_holder(out_dir)
    if record is not None and not _is_stale(record):
        raise _refusal(Path(out_dir), record)


def _create(path: Path, record: dict[str, Any]) -> bool:
    """Create the lock file with `record` atomically; False when one exists."""
    data = json.dumps(record, indent=2).encode()
    tmp = path.with_name(f".anode-lock.{record['token']}.tmp")
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network or FAT file systems): exclusive create
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _take_over(path: Path, stale: dict[str, Any], token: str) -> None:
    """Move a stale lock out of the way (only if it is still the one judged stale)."""
    aside = path.with_name(f".anode-lock.stale-{token}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another process took it over first; the next attempt decides
    try:
        moved = json.loads(aside.read_text())
    except (OSError, ValueError):
        moved = {"unreadable": True}
    if moved.get("token") != stale.get("token") and not _is_stale(moved if isinstance(moved, dict) else {}):
        with contextlib.suppress(OSError):  # a live lock taken meanwhile: put it back
            os.link(aside, path)
    aside.unlink(missing_ok=True)


@contextlib.contextmanager
def output_lock(
    out_dir: str | os.PathLike[str],
    *,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold `out_dir`'s lock for the `with` block (creates `out_dir` when missing).

    Arguments:
        out_dir: the output folder.
        command: what this process runs, for the other process's message (None: this process's
            command line).
        log: where the line about a stale lock taken over goes (default: stderr).

    Yields:
        The lock file's path.

    Raises:
        OutputLocked: another live process holds the folder (raised at once, naming it).
    """
    key = _key(out_dir)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[2] == os.getpid():
            held[0] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield key / LOCK_FILE
        finally:
            with _HELD_GUARD:
                _HELD[key][0] -= 1
        return
    created = not key.exists()  # a folder made only to hold the lock is removed with it, if still empty
    key.mkdir(parents=True, exist_ok=True)
    path = key / LOCK_FILE
    token = uuid.uuid4().hex
    argv = getattr(sys, "orig_argv", None) or sys.argv
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or shlex.join(argv),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": token, "pid_start": _process_start(os.getpid())}
    for _ in range(20):
        if _create(path, record):
            break
        current = lock_holder(key)
        if current is None:
            continue  # released meanwhile
        if current.get("unreadable"):
            time.sleep(0.05)  # perhaps being written (exclusive create): look again before judging it
            current = lock_holder(key)
            if current is None or not current.get("unreadable"):
                continue
        if not _is_stale(current):
            raise _refusal(key, current)
        what = "an unreadable lock" if current.get("unreadable") else f"the lock of a process that is gone ({_describe(current)})"
        (log or (lambda line: print(line, file=sys.stderr)))(f"{key}: taking over {what}")
        _take_over(path, current, token)
    else:
        raise OutputLocked(f"could not take the lock {path} (it changed hands 20 times); try again")
    with _HELD_GUARD:
        _HELD[key] = [1, token, os.getpid()]
    try:
        yield path
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        current = lock_holder(key)
        if current is not None and current.get("token") == token:
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                key.rmdir()


def locks_output(parameter: str) -> Callable[[F], F]:
    """Make a command hold the lock of the folder its argument `parameter` names for the whole call, so that
    everything it writes there (runs, figures, reports) has one writer; nested commands re-enter it.

    Arguments:
        parameter: the name of the command's output-folder argument (e.g. "out_dir").

    Returns:
        The decorator.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with output_lock(signature.bind(*args, **kwargs).arguments[parameter]):
                return fn(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate
