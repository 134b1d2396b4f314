"""Fetch a public dataset described by a manifest, verify it, and cache it.

A manifest (JSON, see ``data/`` at the top of the repository) names the archive URL,
the member to extract, and checksums: ``archive_sha256`` of the download and
``member_sha256`` or ``member_git_blob`` (the git blob id, which public repository
trees list) of the extracted file. ``side_members`` (member → git blob id) are the side
tables extracted beside it (MovieLens' movies.dat and users.dat). Files land in the cache only
once verified, by rename, so an interrupted or corrupted download never poses as data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from recvae.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetManifest:
    name: str
    url: str
    member: str
    archive_sha256: str | None = None
    member_sha256: str | None = None
    member_git_blob: str | None = None
    side_members: dict = field(default_factory=dict)
    reader: dict = field(default_factory=dict)
    license: str = ""
    expected_rows: int | None = None

    def members(self) -> dict[str, tuple[str | None, str | None]]:
        """Every member to extract → its (SHA-256, git blob id): the log first, then the side tables."""
        return {self.member: (self.member_sha256, self.member_git_blob),
                **{member: (None, blob) for member, blob in self.side_members.items()}}

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetManifest:
        try:
            payload = json.loads(Path(path).read_text())
            return cls(**payload)
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"{path}: not a dataset manifest ({exc})") from None


MANIFESTS = Path(__file__).resolve().parents[2] / "data"  # the checkout's data/ folder


def find_manifest(name_or_path: str | Path) -> DatasetManifest:
    """A manifest by file path, or by name from the checkout's ``data/`` folder (``ml-1m``)."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = MANIFESTS / f"{name_or_path}.json"
        if not path.exists():
            known = sorted(p.stem for p in MANIFESTS.glob("*.json")) if MANIFESTS.is_dir() else []
            raise DataError(f"no dataset manifest named {name_or_path!r}; known: {known or 'none here'} "
                            "(or pass the path of a manifest .json)")
    return DatasetManifest.from_file(path)


def default_cache_dir() -> Path:
    return Path(os.environ.get("RECVAE_DATA", Path.home() / ".cache" / "recvae"))


def _file_digests(path: Path) -> tuple[str, str]:
    """(SHA-256, git blob SHA-1) of a file in one pass."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1()
    blob.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def _verify_member(manifest: DatasetManifest, member: str, path: Path) -> None:
    expected_sha256, expected_blob = manifest.members()[member]
    sha256, blob = _file_digests(path)
    if expected_sha256 and sha256 != expected_sha256:
        raise DataError(f"{manifest.name}: {member} has SHA-256 {sha256}, expected {expected_sha256}")
    if expected_blob and blob != expected_blob:
        raise DataError(f"{manifest.name}: {member} has git blob id {blob}, expected {expected_blob}")


def fetch(manifest: DatasetManifest, cache_dir: str | Path | None = None) -> Path:
    """Path of the verified log, downloading and extracting it (and its side tables, beside it) on first use."""
    if not (manifest.member_sha256 or manifest.member_git_blob or manifest.archive_sha256):
        raise DataError(f"{manifest.name}: the manifest has no checksum; refusing unverifiable data")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / manifest.name
    missing = {member for member in manifest.members() if not (folder / Path(member).name).exists()}
    for member in set(manifest.members()) - missing:
        _verify_member(manifest, member, folder / Path(member).name)
    if missing:
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            _download(manifest, folder, missing)
        except BaseException:
            if created and not any(folder.iterdir()):  # a failed first download leaves no trace
                folder.rmdir()
            raise
    return folder / Path(manifest.member).name


def _download(manifest: DatasetManifest, folder: Path, members: set[str]) -> None:
    """Download, verify and extract ``members`` into ``folder``, through a temporary folder inside it."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive"
        log.info("downloading %s from %s", manifest.name, manifest.url)
        try:
            with urllib.request.urlopen(manifest.url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise DataError(f"{manifest.name}: cannot download {manifest.url} ({exc})") from None
        if manifest.archive_sha256:
            got = _file_digests(archive)[0]
            if got != manifest.archive_sha256:
                raise DataError(f"{manifest.name}: download has SHA-256 {got}, expected {manifest.archive_sha256}")
        extracted = {}
        for member in sorted(members):  # every member verified before any lands in the cache
            extracted[member] = Path(tmp) / Path(member).name
            try:
                with zipfile.ZipFile(archive) as zipped, zipped.open(member) as src, open(extracted[member], "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise DataError(f"{manifest.name}: cannot extract {member} from the download ({exc})") from None
            _verify_member(manifest, member, extracted[member])
        for member, path in extracted.items():
            os.replace(path, folder / Path(member).name)
