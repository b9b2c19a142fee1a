"""Files written so that nothing is lost: a crash or a full disk leaves the previous file intact.

Every file the package writes (checkpoints, plots, submissions, pages, metrics) goes through
`atomic_write`; `ensure_writable_dir` checks a folder before hours of work rather than after.
"""
from __future__ import annotations

import errno
import glob
import os
from pathlib import Path
import re
import shutil
import tempfile
import time

try:
    import fcntl  # POSIX: a write in progress holds a lock on its temporary file
except ImportError:   # Windows, where an open file cannot be deleted anyway
    fcntl = None

STALE_AFTER = 3600   # s since a temporary file was last written before it may be a killed write's


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _os_error(errno: int | None, message: str) -> OSError:
    """An OSError that prints as message alone, without "[Errno 28]" before it, and keeps errno."""
    err = OSError(message)
    err.errno = errno
    return err


def _blocking_file(folder: Path) -> Path | None:
    """The file standing where folder or one of its parents should be, if any."""
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def _temp_file(folder: Path, name: str) -> Path:
    """An empty new file in folder (created if needed); OSError "cannot write to <folder>: why"."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as e:
        blocker, why = _blocking_file(folder), e.strerror or str(e)
        if blocker is not None:
            why = f"{'it' if blocker == folder else blocker} is a file, not a folder"
        elif e.errno == errno.ENOENT and folder.is_dir():   # /proc, /sys: else "No such file or directory"
            why = "the folder is there but takes no new files"
        raise _os_error(e.errno, f"cannot write to {folder}: {why}") from None
    return Path(tmp)


def ensure_writable_dir(folder: Path) -> Path:
    """Create folder if needed and check a file can be written in it, before hours of work, not after.

    Raises OSError "cannot write to <folder>: why" (like atomic_write). Returns folder.
    """
    folder = Path(folder)
    _temp_file(folder, "write-check").unlink()
    return folder


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp over path: a crash mid-write leaves the old file intact."""
    path = Path(path)
    tmp = _temp_file(path.parent, path.name)
    held = None
    try:
        held = _lock(tmp)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _os_error(e.errno, f"cannot write {path}: {e.strerror or e}") from None
        raise
    finally:
        if held is not None:
            held.close()
    _remove_stale_temps(path)


def _lock(tmp: Path):
    """An open handle holding an exclusive lock on tmp until closed (None without fcntl)."""
    if fcntl is None:
        return None
    handle = open(tmp, "rb")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def archive(paths: list[Path], keep: bool = False) -> list[Path]:
    """Move those of `paths` that exist into `archive/` beside them, stamped with their time; with `keep`,
    link them there instead (a copy where the disk has no links), leaving them in place.

    A fresh run with an earlier run's --name would otherwise replace its trained model at the first
    epoch (a `quick` run after a 55-minute `full` one), and a submission written again its earlier CSV.
    Returns where they went.
    """
    existing = [Path(p) for p in paths if Path(p).exists()]
    if not existing:
        return []
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.stat().st_mtime for p in existing)))
    folder = existing[0].parent / "archive"
    folder.mkdir(exist_ok=True)
    moved = []
    for p in existing:
        target, n = folder / f"{p.stem}.{stamp}{p.suffix}", 1
        while target.exists():   # two runs within a second
            target, n = folder / f"{p.stem}.{stamp}-{n}{p.suffix}", n + 1
        if not keep:
            os.replace(p, target)
        else:
            try:
                os.link(p, target)   # the earlier file's bytes, whatever later replaces the name
            except OSError:
                shutil.copy2(p, target)
        moved.append(target)
    return moved


def case_clashes(names) -> list[list[str]]:
    """Groups (in the order given) of names that differ only in case: one file on macOS's and Windows'
    disks. lower(), not casefold(): no disk takes German sharp s for ss."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.lower(), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def is_stale(path: Path) -> bool:
    """Whether path (a temporary file or folder) was last written over STALE_AFTER ago: a killed
    write's or extraction's, not one still running. OSError when it is gone."""
    return path.stat().st_mtime < time.time() - STALE_AFTER


def _remove_stale_temps(path: Path) -> None:
    """Delete the temporary files of earlier writes of path that a SIGKILL (or power cut) left behind,
    hidden, up to 257 MB each for a submission. Kept: a file a write still holds locked (consensus
    predicts every page before writing on, which can take over an hour), one written to within
    STALE_AFTER, and the temporary files of other targets (`.submission.csv.gz.*` for submission.csv)."""
    own = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")   # mkstemp's 8 random characters
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if not own.fullmatch(old.name) or not is_stale(old):
                continue
            with open(old, "rb") as handle:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)   # OSError while a write holds it
                old.unlink()
        except OSError:   # in use, gone already, or not ours to delete: it only takes space
            pass
