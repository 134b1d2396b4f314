import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from recvae.data import read_interactions
from recvae.data.download import DatasetManifest, fetch
from recvae.errors import DataError

RATINGS = b"1::10::5::978300760\n1::11::3::978302109\n2::10::4::978298413\n"


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "ml-tiny.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("ml-tiny/ratings.dat", RATINGS)
    return path


def manifest(archive: Path, **overrides) -> DatasetManifest:
    fields = dict(name="ml-tiny", url=archive.as_uri(), member="ml-tiny/ratings.dat", member_git_blob=git_blob(RATINGS))
    fields.update(overrides)
    if "archive_sha256" not in overrides:
        fields["archive_sha256"] = hashlib.sha256(archive.read_bytes()).hexdigest()
    return DatasetManifest(**fields)


def test_fetch_verifies_extracts_and_caches(tmp_path, archive):
    cache = tmp_path / "cache"
    spec = manifest(archive)
    path = fetch(spec, cache)
    assert path.read_bytes() == RATINGS
    assert read_interactions(path)["item"].tolist() == [10, 11, 10]
    archive.unlink()  # the second call must come from the cache
    assert fetch(spec, cache) == path


def test_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path, archive):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="git blob id .* expected 0000"):
        fetch(manifest(archive, member_git_blob="0" * 40), cache)
    with pytest.raises(DataError, match="download has SHA-256"):
        fetch(manifest(archive, archive_sha256="f" * 64), cache)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_unreachable_url_and_missing_member(tmp_path, archive):
    with pytest.raises(DataError, match="cannot download"):
        fetch(manifest(tmp_path / "absent.zip", archive_sha256=None), tmp_path / "c")
    with pytest.raises(DataError, match="cannot extract"):
        fetch(manifest(archive, member="ml-tiny/other.dat"), tmp_path / "c")


def test_manifest_without_checksum_is_refused(tmp_path, archive):
    with pytest.raises(DataError, match="no checksum"):
        fetch(manifest(archive, archive_sha256=None, member_git_blob=None), tmp_path)


def test_shipped_manifests_parse():
    for path in (Path(__file__).parent.parent / "data").glob("*.json"):
        parsed = DatasetManifest.from_file(path)
        assert parsed.url.startswith("https://") and (parsed.member_git_blob or parsed.member_sha256)
        json.loads(path.read_text())


def test_recvae_download_fetches_by_manifest_path_and_refuses_unknown_names(tmp_path, archive, capsys):
    from recvae.cli import main

    path = tmp_path / "ml-tiny.json"
    fields = manifest(archive).__dict__
    path.write_text(json.dumps({**fields, "reader": {"sep": "::", "header": False}}))
    assert main(["download", str(path), "--cache", str(tmp_path / "cache")]) == 0
    out, err = capsys.readouterr()
    cached = Path(out.strip())
    assert cached.read_bytes() == RATINGS and "recvae train --data" in err and "--sep '::'" in err
    assert main(["download", "no-such-set"]) == 2
    assert "no dataset manifest named 'no-such-set'; known: ['ml-1m']" in capsys.readouterr().err


def test_side_tables_are_extracted_beside_the_log_and_verified(tmp_path):
    movies = b"10::Toy Story (1995)::Animation\n11::Jumanji (1995)::Adventure\n"
    path = tmp_path / "ml-side.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("ml-tiny/ratings.dat", RATINGS)
        zipped.writestr("ml-tiny/movies.dat", movies)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="movies.dat has git blob id"):
        fetch(manifest(path, side_members={"ml-tiny/movies.dat": "0" * 40}), cache)
    assert not any(p.is_file() for p in cache.rglob("*"))  # nothing lands unless every member is verified
    spec = manifest(path, side_members={"ml-tiny/movies.dat": git_blob(movies)})
    log = fetch(spec, cache)
    assert (log.parent / "movies.dat").read_bytes() == movies
    (log.parent / "movies.dat").unlink()  # a cache from before the side tables: fetched again, the log kept
    assert fetch(spec, cache) == log and (log.parent / "movies.dat").exists()
