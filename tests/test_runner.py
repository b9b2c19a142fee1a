"""src.common.runner.run_command: the exit codes and lines every command shares."""
from __future__ import annotations

import pytest

from src.common.errors import CheckpointError, DataError
from src.common.runner import run_command
from src.common.signals import Terminated


def fail(exc: BaseException):
    def work():
        raise exc
    return work


@pytest.mark.parametrize("exc", [DataError("x.png: truncated"), CheckpointError("m.pt: not a checkpoint"),
                                 PermissionError("no write access")])
def test_user_errors_are_one_line_and_exit_1(exc, capsys):
    assert run_command(fail(exc)) == 1
    err = capsys.readouterr().err
    assert err == f"error: {exc}\n"


def test_errors_named_by_the_command_join_them(capsys):
    assert run_command(fail(ValueError("--lr: bad")), errors=(ValueError,)) == 1
    assert capsys.readouterr().err == "error: --lr: bad\n"
    with pytest.raises(ValueError):   # not named: a bug, whose traceback is the report
        run_command(fail(ValueError("bug")))


def test_interrupts_exit_130_or_143_with_the_commands_words(capsys):
    assert run_command(fail(KeyboardInterrupt()), interrupted=lambda what: f"{what}; kept a.pt") == 130
    assert capsys.readouterr().err == "\ninterrupted; kept a.pt\n"
    assert run_command(fail(Terminated())) == 143
    assert capsys.readouterr().err == "\nstopped by SIGTERM\n"


def test_the_exit_code_is_the_works_int_else_0():
    assert run_command(lambda: 3) == 3
    assert run_command(lambda: "a result") == 0
    assert run_command(lambda: None) == 0


def test_a_reader_that_stops_ends_the_command_quietly(tmp_path):
    """`command | head -1`: the write that finds the pipe closed ends the command with the shell's code
    for it, and no `error:` line or traceback (Python's last flush of stdout included)."""
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys, time\nfrom src.common.runner import run_command\n"
              "def work():\n    for k in range(10 ** 6):\n"
              "        print(k, flush=True)\n        time.sleep(0.001)\n"
              "sys.exit(run_command(work))\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"0\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""
