import os
import time

import pytest

from src.common.files import atomic_write, ensure_writable_dir


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk died")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_ensure_writable_dir_creates_checks_and_leaves_nothing(tmp_path):
    folder = ensure_writable_dir(tmp_path / "a" / "b")
    assert folder == tmp_path / "a" / "b" and folder.is_dir() and list(folder.iterdir()) == []
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(OSError) as err:
        ensure_writable_dir(tmp_path / "file" / "sub")
    blocked = tmp_path / "file"
    assert str(err.value) == f"cannot write to {blocked / 'sub'}: {blocked} is a file, not a folder"
    with pytest.raises(OSError, match=r"cannot write to .*file: it is a file, not a folder$"):
        ensure_writable_dir(blocked)
    assert err.value.errno is not None


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no procfs")
def test_a_folder_that_takes_no_files_is_named_as_such():
    """procfs refuses a new file with ENOENT, "No such file or directory", for a folder that is there."""
    with pytest.raises(OSError, match=r"^cannot write to /proc: the folder is there but takes no new files"):
        ensure_writable_dir("/proc")


@pytest.mark.skipif(getattr(os, "geteuid", lambda: 0)() == 0, reason="root may write to read-only folders")
def test_ensure_writable_dir_read_only_folder(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        with pytest.raises(OSError, match=r"cannot write to .*ro: Permission denied"):
            ensure_writable_dir(tmp_path / "ro")
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)   # mkstemp makes 0600 files: a checkpoint others cannot read would surprise
    try:
        atomic_write(tmp_path / "m.txt", lambda tmp: tmp.write_text("x"))
        assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(mask)


def test_a_write_removes_temporary_files_a_killed_write_left(tmp_path):
    import fcntl

    target = tmp_path / "sub[1].csv"   # glob characters in the name match only themselves
    stale, recent, locked = (tmp_path / f".sub[1].csv.{tag}_0.tmp" for tag in ("killed", "recent", "locked"))
    other = tmp_path / ".sub[1].csv.gz.killed_0.tmp"   # another target's
    for p in (stale, recent, locked, other):
        p.write_text("partial")
    for p in (stale, locked, other):
        os.utime(p, (time.time() - 2 * 3600,) * 2)
    with open(locked, "rb") as running:   # a write that has not written for hours, still going on
        fcntl.flock(running, fcntl.LOCK_EX)
        atomic_write(target, lambda tmp: tmp.write_text("new"))
        assert target.read_text() == "new" and not stale.exists()
        assert recent.exists() and locked.exists() and other.exists()
    atomic_write(target, lambda tmp: tmp.write_text("newer"))
    assert not locked.exists() and recent.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, recent.name, other.name])
