"""File writing that never leaves a half-written target, and content hashes: used by model
directories, checkpoints, exports and benchmark reports alike."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

from recvae.errors import OutputExistsError


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ordinary_permissions(path: str | Path) -> None:
    """mkstemp/mkdtemp create private files; outputs get the usual umask-based mode."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a directory's entries to disk, so a rename after it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_beside(path: str | Path, directory: bool = False) -> Path:
    """A new, empty temporary file or folder next to ``path``, named after it, with ordinary permissions."""
    path = Path(path)
    prefix, suffix = f".{path.name}.", ".tmp"
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
        os.close(fd)
        tmp = Path(name)
    ordinary_permissions(tmp)
    return tmp


def replace_durably(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file over ``path`` after flushing it, then flush the folder."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(Path(path).parent)


def write_atomic_bytes(path: str | Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part."""
    tmp = temporary_beside(path)
    try:
        with writing(path, "the file"):
            tmp.write_bytes(data)
            replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic_json(path: str | Path, payload) -> None:
    write_atomic_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def remove_stale_temporaries(path: str | Path) -> int:
    """Remove temporary files an interrupted earlier write of ``path`` left beside it; returns how many."""
    path = Path(path)
    removed = 0
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def check_writable(path: str | Path, what: str = "output") -> None:
    """Fail now, naming ``path``, when ``path`` could not be written later: a file where a folder is
    meant, or a folder (the nearest existing one above it) without write permission."""
    path = Path(path)
    ancestor = path if path.is_dir() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{ancestor}: is a file, not a folder, so {what} {path} cannot be written")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{ancestor}: not writable, so {what} {path} cannot be written")


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def file_stem(name: str) -> str:
    """A name (a benchmark's model, say) as part of a file name: letters, digits and "-" as they are, every
    other character as "_" and its code point in hex, then "_" (so "EASE 1.5" is "EASE_20_1_2e_5"). Distinct
    names give distinct stems, with no dot for suffix handling to cut at and no path separator."""
    return "".join(c if c in _PLAIN else f"_{ord(c):x}_" for c in name)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def claimed(path: str | Path, what: str, *, overwrite: bool = False, directory: bool = False):
    """Claim ``path`` for this run before its work starts, and hold the claim until the block ends.

    Refused at once, naming ``path``: a file where a folder is meant or the reverse; an existing target
    (a folder counts when it holds anything) unless ``overwrite``; a target another live recvae process
    has claimed (a lock file beside it, created atomically; one left by a process that died is taken
    over). So two runs never write one output, and nothing the user put there is replaced unasked."""
    path = Path(path)
    check_writable(path, what)
    if path.exists():
        if path.is_dir() != directory:
            raise ValueError(f"{path}: is a {'folder' if path.is_dir() else 'file'}; {what} is written as a "
                             f"{'folder' if directory else 'file'}: name another path")
        if not overwrite and (not directory or any(path.iterdir())):
            raise OutputExistsError(f"{path}: exists, and {what} replaces nothing unasked: pass {{overwrite=True}}, "
                                    "or another path")
    lock = path.with_name(f".{path.name}.recvae-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            text = lock.read_text().strip() if lock.exists() else ""
            if text.isdigit() and process_alive(int(text)) and int(text) != os.getpid():
                raise FileExistsError(f"{path}: another recvae run (process {text}) is writing it now; wait for it "
                                      "to end, or write elsewhere") from None
            lock.unlink(missing_ok=True)  # its process is gone
    else:
        raise FileExistsError(f"{path}: could not claim it ({lock} keeps coming back)")
    try:
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        yield path
    finally:
        lock.unlink(missing_ok=True)


class WriteError(OSError):
    """A write that failed (a full or read-only disk, a lost mount), naming the target the user knows
    rather than a temporary file beside it, and the cause."""


@contextlib.contextmanager
def writing(path: str | Path, what: str, errors: tuple[type[BaseException], ...] = ()):
    """Turn a failed write inside the block into one ``WriteError`` naming ``path`` and the cause: every
    ``OSError``, and the writer libraries' own error types given in ``errors`` (safetensors and Arrow
    raise theirs on a full disk), so that callers need to catch only ``OSError``."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, *errors) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip() or type(exc).__name__
        raise WriteError(getattr(exc, "errno", None) or errno.EIO, f"{path}: {what} could not be written ({cause})") from exc
