"""The one command runner: bad input -> one `error:` line and exit 1, Ctrl-C -> 130, SIGTERM -> 143,
its output piped into a reader that stops (`| head`) -> 141, quietly."""
from __future__ import annotations

import os
import sys
from typing import Callable

from src.common.errors import CheckpointError, DataError, DeviceError
from src.common.runtime import teardown_runtime
from src.common.signals import Terminated, interrupt_code, sigterm_as_interrupt

# Failures of the user's input, data, checkpoint, device or disk: one line says what to do. Anything else is a
# bug, and its traceback is what a report needs.
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, CheckpointError, DeviceError, OSError)
BROKEN_PIPE = 141   # a shell's code for a command whose output pipe closed (128 + SIGPIPE)


def run_command(work: Callable[[], object], *, errors: tuple[type[BaseException], ...] = (),
                interrupted: Callable[[str], str] | None = None) -> int:
    """Run a command's work and return its exit code: the int `work` returns, else 0.

    errors: exception types reported as `error: <message>` (exit 1) besides USER_ERRORS.
    interrupted: given "interrupted" or "stopped by SIGTERM", the line(s) to print (what was kept,
    how to go on); the default prints just that.
    """
    try:
        with sigterm_as_interrupt():
            code = work()
    except BrokenPipeError:   # the reader went away (`| head`): stop quietly, as a pipeline expects
        try:   # else Python's last flush of stdout fails with a second traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):   # stdout is no file (captured)
            pass
        return BROKEN_PIPE
    except (*USER_ERRORS, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        what = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"\n{interrupted(what) if interrupted else what}", file=sys.stderr)
        return interrupt_code(e)
    finally:
        teardown_runtime()   # torchrun's process group, where a run started one
    return code if isinstance(code, int) else 0
