"""The one place output files and folders are written: whole or not at all, never over an input.

* A file is written to a temporary name beside it and renamed into place, so a failed or
  interrupted command leaves nothing half-written. A character device or a FIFO (``-o
  /dev/stdout``, a named pipe) is written through instead, since it cannot be replaced. A
  symbolic link is followed: the file it points to is replaced and the link stays.
* A folder (``report -o DIR``) is built beside its target and swapped in whole, under a lock, so
  two writers never mix their files and a reader never sees half a report.
* Nothing is written over a file this process read as an input (the model's ``.py``, the
  ``--weights`` file, the ``--input-file``, an image, a summary being compared).
* Temporary names carry the writing process's id; ones left by a killed process are removed by
  the next write beside them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from modelviz.errors import OutputError

T = TypeVar("T")

#: Temporary files and folders: ``.modelviz-<pid>-<random>[.part]``.
STAGING_PREFIX = ".modelviz-"

_inputs: dict[tuple[int, int, int], str] = {}
_interrupted: list[bool] = []
_cleaned: set[str] = set()  # folders already rid of dead processes' temporaries


def mark_input(path: str | Path, what: str) -> None:
    """Remember that ``path`` was read as ``what`` (``--weights``): it must not be overwritten."""
    with contextlib.suppress(OSError):
        info = Path(path).stat()
        _inputs.setdefault((info.st_dev, info.st_ino, info.st_mtime_ns), f"{what} {path}")


def note_interrupt() -> None:
    """Ctrl-C arrived: from now on nothing is committed, even if some library swallowed it."""
    _interrupted.append(True)


def was_interrupted() -> bool:
    return bool(_interrupted)


def interrupt_handled() -> None:
    """The Ctrl-C was the expected way to end (a server's), not an interruption."""
    _interrupted.clear()


def reset() -> None:
    """A new command: no inputs read yet, no interrupt."""
    _inputs.clear()
    _interrupted.clear()
    _cleaned.clear()


def _check_commit() -> None:
    if _interrupted:
        raise KeyboardInterrupt


def _refuse_input(target: Path) -> None:
    try:
        info = target.stat()
    except OSError:
        return
    read_as = _inputs.get((info.st_dev, info.st_ino, info.st_mtime_ns))
    if read_as is not None:
        raise OutputError(f"refusing to write {target}: it is {read_as}, an input of this "
                          "command.", "Choose another output path.")


def _problem(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and is someone else's
        return True
    return True


def _stale_pid(name: str) -> int | None:
    """The id of the process that made the temporary ``name``, if that process is gone."""
    if not name.startswith(STAGING_PREFIX):
        return None
    pid_text = name[len(STAGING_PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return None
    pid = int(pid_text)
    return None if _alive(pid) else pid


def clean_stale(folder: Path) -> None:
    """Remove temporary files and folders that killed modelviz processes left in ``folder``;
    once per folder and process (a report writes dozens of files into one)."""
    key = str(folder.resolve())
    if key in _cleaned:
        return
    _cleaned.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if _stale_pid(entry.name) is None:
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink()


def _prefix() -> str:
    return f"{STAGING_PREFIX}{os.getpid()}-"


def _make_folder(folder: Path, target: str | Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise OutputError(f"cannot write {target}: {exc.filename or folder} is a file, not a "
                          "folder.", "Choose another output path.") from exc
    except OSError as exc:
        raise OutputError(f"cannot create the folder {folder} for {target}: {_problem(exc)}.",
                          "Choose another output path.") from exc


def _writes_through(path: Path) -> bool:
    """A character device or FIFO: written in place, since renaming over it would replace it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def resolve_target(target: str | Path) -> Path:
    """Where writing ``target`` really lands: a symbolic link's destination, checked."""
    final = Path(target)
    if _writes_through(final):  # /dev/stdout is a link to a pipe that has no path of its own
        return final
    if final.is_symlink():
        final = Path(os.path.realpath(final))
    _refuse_input(final)
    if final.is_dir():
        raise OutputError(f"{target} is a folder.", "Give a file name, not a folder.")
    return final


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds."""
    final = resolve_target(target)
    if _writes_through(final):
        yield final
        return
    folder = final.parent if str(final.parent) else Path()
    _make_folder(folder, target)
    clean_stale(folder)
    try:
        handle, name = tempfile.mkstemp(prefix=_prefix(), suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {_problem(exc)}.",
                          "Choose another output path.") from exc
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _check_commit()
        try:
            # mkstemp makes the file private (0600); outputs get the mode a new file would get.
            temporary.chmod(new_file_mode())
            temporary.replace(final)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {_problem(exc)}.",
                              "Choose another output path.") from exc
    finally:
        temporary.unlink(missing_ok=True)


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file here (0644 under the usual umask): temporary
    files are private, the outputs they become should not be."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text(target: str | Path, text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))


def write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as temporary:
        try:
            temporary.write_bytes(data)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {_problem(exc)}.",
                              "Choose another output path.") from exc
    return Path(target)


def staging_dir(beside: str | Path | None = None) -> Path:
    """A new private folder beside ``beside`` (same file system, so its files can be renamed
    into place), or in the system's temporary folder; stale ones of dead processes go first."""
    folder = (Path(beside).parent if str(Path(beside).parent) else Path()) if beside \
        else Path(tempfile.gettempdir())
    if beside:
        _make_folder(folder, beside)
    clean_stale(folder)
    try:
        return Path(tempfile.mkdtemp(prefix=_prefix(), dir=folder))
    except OSError as exc:
        raise OutputError(f"cannot write into {folder}: {_problem(exc)}.",
                          "Choose another output path.") from exc


def commit_files(staging: Path, folder: Path, names: list[str] | None = None) -> list[Path]:
    """Move files from ``staging`` into ``folder`` (copied first where it is on another file
    system), each appearing whole under its name."""
    _check_commit()
    _make_folder(folder, folder)
    moved = []
    for source in sorted(staging.iterdir()) if names is None else [staging / n for n in names]:
        target = folder / source.name
        _check_commit()
        try:
            source.chmod(new_file_mode())
            source.replace(target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise OutputError(f"cannot write {target}: {_problem(exc)}.",
                                  "Choose another output path.") from exc
            with atomic_path(target) as temporary:
                shutil.copyfile(source, temporary)
        moved.append(target)
    return moved


# ----------------------------------------------------------------------------------------------
# Formats told by extensions.


def format_from_suffix(path: str | Path | None, table: Mapping[str, T], default: T, *,
                       listed: str | None = None, name_only: bool = False) -> T:
    """The format an output file's extension asks for (``table``: ``".md"`` -> format, any
    case), or ``default`` when there is no file; every command that writes ``-o FILE`` decides
    the same way and says the same thing about an extension it does not know. The error names
    the file (only its name with ``name_only``) and the extensions to use: ``listed``, else
    every key of ``table``."""
    if path is None:
        return default
    found = table.get(Path(path).suffix.lower())
    if found is None:
        keys = list(table)
        known = listed or (", ".join(keys[:-1]) + " or " + keys[-1] if len(keys) > 1
                           else "".join(keys))
        raise OutputError(f"cannot tell the format of {Path(path).name if name_only else path} "
                          "from its extension.", f"Use {known}, or pass `format`.")
    return found


# ----------------------------------------------------------------------------------------------
# Folders written whole.


@contextlib.contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Hold the lock that says "modelviz is writing ``target``"; a second writer fails at once,
    naming the first."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, the swap still protects readers
        yield
        return
    folder = target.parent if str(target.parent) else Path()
    _make_folder(folder, target)
    lock = folder / f"{STAGING_PREFIX}lock-{target.name}"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write into {folder}: {_problem(exc)}.",
                              "Choose another output path.") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputError(f"another modelviz (process {holder}) is writing {target}.",
                              "Wait for it to finish, or choose another output path.") from None
        try:
            same = os.fstat(fd).st_ino == lock.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its last holder removed while we waited to open it
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE); False if this
    system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # old kernel or file system
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(staging: Path, final: Path) -> None:
    """``staging`` becomes ``final``; what ``final`` held before is removed afterwards."""
    _check_commit()
    try:
        if not final.exists():
            staging.rename(final)
            return
        if _exchange(staging, final):
            shutil.rmtree(staging, ignore_errors=True)
            return
        old = Path(tempfile.mkdtemp(prefix=_prefix(), dir=final.parent))
        final.rename(old / final.name)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise OutputError(f"cannot replace {final}: {_problem(exc)}.",
                          "Choose another output path.") from exc


def _refuse_file(target: str | Path, final: Path, holds: str, example: str) -> None:
    if final.exists() and not final.is_dir():
        raise OutputError(f"{target} is a file, not a folder.",
                          f"Give a folder for the {holds}, e.g. `output={example}`.")


def check_folder(target: str | Path, *, holds: str, example: str) -> Path:
    """``target`` as a folder to write ``holds`` (``"images"``) into, checked before any work:
    not a file, and its nearest existing ancestor a folder this process may write in. Creates
    nothing; ``example`` is the ``-o`` value the error suggests (``activations/``)."""
    directory = Path(target)
    _refuse_file(target, directory, holds, example)
    ancestor = directory
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot create the folder {target}: {ancestor} is a file.",
                          "Choose another folder with -o.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {holds} to the folder {target}: permission denied.",
                          "Choose another folder with -o.")
    return directory


def check_replaceable(target: str | Path,
                      replaceable: Callable[[Path], str | None]) -> Path:
    """``target`` as a folder ``atomic_folder`` may replace: none yet, empty, or one that
    ``replaceable`` accepts (it says why not: files modelviz did not write). Callable early,
    before any work, and again under the lock."""
    final = Path(target)
    if final.is_symlink():  # as for files: the folder it points to is replaced, the link stays
        final = Path(os.path.realpath(final))
    _refuse_file(target, final, "report", "report/")
    if final.is_dir() and any(final.iterdir()):
        why = replaceable(final)
        if why is not None:
            raise OutputError(f"{target} is not empty, and {why}.",
                              "Give a new or empty folder: the report replaces it whole.")
    return final


@contextlib.contextmanager
def atomic_folder(target: str | Path,
                  replaceable: Callable[[Path], str | None]) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` to fill; it replaces ``target`` whole if the
    block succeeds (see ``check_replaceable`` for which folders may be replaced)."""
    final = check_replaceable(target, replaceable)
    with exclusive(final):
        check_replaceable(final, replaceable)  # again: another writer may have come first
        staging = staging_dir(final)
        try:
            yield staging
            _swap_in(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
