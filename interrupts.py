"""SIGTERM and SIGINT end the run cleanly instead of killing it mid-step.

A Space gets SIGTERM on Restart, Pause, a new build or a hardware change, and is killed a little
later. The handler raises JobInterrupted in the main thread wherever it is, so the job's own
`finally` blocks release the run lock, finish W&B and write the summary (the Space is not paused:
the platform is already stopping or restarting it). Under torchrun every rank gets the signal.

Sections that must not be cut in half (push + tag, pin + restart + verify) run under
`deferred_signals()`: a signal is held until the section ends, then raised. A long wait inside
one (the new version may take minutes to serve; the platform kills the process seconds after
its SIGTERM) runs under `interruptible()`: the signal is raised there at once, so the section
can put things back (pin the served version again) while there is time. Once the job is
cleaning up (`cleaning_up()`), further signals are ignored: the cleanup is what they would ask
for, and pausing its own Space sends this process a SIGTERM.
"""
from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class JobInterrupted(BaseException):
    """A BaseException, like KeyboardInterrupt: no `except Exception` in the job swallows it."""

    def __init__(self, signum: int, during: BaseException | None = None):
        self.signum = signum
        self.during = during
        message = f"{signal.Signals(signum).name} received"
        if during is not None:  # the deferred section failed on its own meanwhile
            message += f" (meanwhile: {type(during).__name__}: {during})"
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


class _State:
    depth = 0           # nesting of deferred_signals()
    pending: int | None = None
    done = False        # interrupted already, or cleaning up: ignore further signals


_state = _State()


def _handler(signum, frame) -> None:
    if _state.done:
        return
    if _state.depth:
        _state.pending = _state.pending or signum
        return
    _state.done = True
    raise JobInterrupted(signum)


@contextlib.contextmanager
def handle_signals():
    """Install the handlers for the block, then restore the previous ones (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth, _state.pending, _state.done = 0, None, False
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred_signals():
    """A critical section: a signal arriving inside is raised when the section ends."""
    _state.depth += 1
    try:
        yield
    except BaseException as error:
        _state.depth -= 1
        _raise_pending(during=error)
        raise
    _state.depth -= 1
    _raise_pending()


@contextlib.contextmanager
def interruptible():
    """A wait inside a critical section that a signal cuts short: one held already, or arriving
    during the block, is raised at once, for the section to undo its first half."""
    depth, _state.depth = _state.depth, 0
    try:
        _raise_pending()
        yield
    finally:
        _state.depth = depth


def _raise_pending(during: BaseException | None = None) -> None:
    if _state.depth or _state.pending is None or _state.done:
        return
    signum, _state.pending, _state.done = _state.pending, None, True
    raise JobInterrupted(signum, during) from during


@contextlib.contextmanager
def cleaning_up():
    """The job's final cleanup: a signal now changes nothing (it is ignored)."""
    _state.done = True
    yield
