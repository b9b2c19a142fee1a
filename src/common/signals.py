"""Ctrl-C and SIGTERM as one KeyboardInterrupt, held where a half-done step would be lost, and
their exit codes (130, 143).
"""
from __future__ import annotations

from contextlib import contextmanager
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, as Kaggle, Slurm, `docker stop` and `kill` send it, handled like Ctrl-C: the temporary
    file of a write in progress is removed (SIGTERM's default would leave a hidden partial CSV of up to
    257 MB) and the command says what it kept."""


def _terminate(signum, frame):
    raise Terminated


@contextmanager
def sigterm_as_interrupt():
    """Inside: SIGTERM raises Terminated (a KeyboardInterrupt). Signals bind in the main thread only."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_held():
    """Inside: SIGINT and SIGTERM wait, to be delivered on leaving, at an ordinary line. For forking
    worker processes: raised inside os.fork's at-fork callbacks, KeyboardInterrupt or Terminated is
    dropped ("Exception ignored in ... _releaseLock") and the run goes on. Main thread only, POSIX only."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def quiet_worker(worker_id: int) -> None:
    """A DataLoader worker_init_fn: workers leave Ctrl-C and SIGTERM to the main process, which stops
    them. Else a signal to the whole process group (Slurm, `kill -- -PGID`) kills them first, and their
    tracebacks and "DataLoader worker exited unexpectedly" replace the command's resume hint."""
    for sig in INTERRUPTS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):   # forked under interrupts_held
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)


def interrupt_code(e: KeyboardInterrupt) -> int:
    """The shell's exit code for the signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(e, Terminated) else 130
