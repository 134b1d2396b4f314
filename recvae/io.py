"""File writing that never leaves a half-written target, and content hashes: used by model
directories, checkpoints, exports and benchmark reports alike."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


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
