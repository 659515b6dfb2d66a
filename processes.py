"""Whether a process is alive, by pid: shared by the local hub (its Space children) and the run lock."""
from __future__ import annotations

import os
from pathlib import Path


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (Linux); [] when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_start(pid: int) -> str | None:
    """The start time of a process, to tell a recorded child from a reused pid."""
    fields = proc_stat(pid)
    return fields[19] if len(fields) > 19 else None


def running(pid: int) -> bool:
    """The process exists and has not ended (a zombie waiting for its parent's wait() has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_stat(pid)[:1] != ["Z"]
