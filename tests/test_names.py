"""Original IDs in the calls a user reaches for first, names beside them, and what the reader says it took."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pandas as pd
import pytest

from recvae.cli import main
from recvae.data import Interactions, read_interactions
from recvae.data.side import read_side_table
from recvae.errors import DataError
from recvae.models import EASE


@pytest.fixture(scope="module")
def movie_log(tmp_path_factory):
    """A log whose item IDs (101, 102, ...) are not the matrix indices, with a MovieLens-style movies.dat."""
    folder = tmp_path_factory.mktemp("movies")
    rng = np.random.default_rng(3)
    rows = [(user, 101 + item) for user in range(200) for item in rng.choice(30, size=8, replace=False)]
    log = pd.DataFrame(rows, columns=["user", "item"])
    log.to_csv(folder / "pairs.tsv", sep="\t", index=False, header=False)
    titles = "".join(f"{101 + i}::Film {i} - été ({1990 + i})::Drama\n" for i in range(30))
    with gzip.open(folder / "movies.dat.gz", "wb") as handle:
        handle.write(titles.encode("latin-1"))  # MovieLens' own encoding: "é" is one byte
    return folder, log


@pytest.fixture(scope="module")
def ease_dir(movie_log, tmp_path_factory):
    """EASE trained on the movie log by the command line, as a user would."""
    folder, _ = movie_log
    model = tmp_path_factory.mktemp("ease") / "m"
    assert main(["train", "--model", "ease", "--data", str(folder / "pairs.tsv"), "--out", str(model),
                 "--heldout-users", "20", "-q", "--no-tracking"]) == 0
    return model


def test_similar_df_takes_and_returns_original_ids(movie_log):
    folder, log = movie_log
    data = Interactions.from_frame(log)
    model = EASE(l2=5.0).fit(data.matrix, items=data.items)
    table = model.similar_df([101], n=5, item_names=folder / "movies.dat.gz")
    index = int(data.items.index_of([101])[0])
    by_index, _ = model.similar_items(index, N=6)
    # the neighbours of ID 101, not of matrix index 101 or of whatever item sits at index 1
    assert table["similar_item"].tolist() == data.items.id_of(by_index[by_index != index][:5]).tolist()
    assert set(table["item"]) == {101} and 101 not in set(table["similar_item"])
    assert table["item_name"].iloc[0] == "Film 0 - été (1990)"
    expected = [f"Film {i - 101} - été ({1990 + i - 101})" for i in table["similar_item"]]
    assert table["similar_item_name"].tolist() == expected
    with pytest.raises(DataError, match="unknown item ID 999"):
        model.similar_df([999])


def test_recvae_similar_lists_neighbours_by_title(movie_log, ease_dir, tmp_path, capsys):
    folder, _ = movie_log
    model = ease_dir
    capsys.readouterr()
    assert main(["similar", "--model", str(model), "--items", "101,102", "--top-n", "3",
                 "--item-names", str(folder / "movies.dat.gz")]) == 0
    printed = capsys.readouterr().out
    assert "Film 0 - été (1990)" in printed and "similar_item_name" in printed
    out = tmp_path / "similar.csv"
    assert main(["similar", "--model", str(model), "--items", "101", "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["item", "similar_item", "rank", "score"] and len(written) == 10
    assert main(["similar", "--model", str(model), "--items", "5", "-q"]) == 2
    assert "unknown item ID 5" in capsys.readouterr().err
    # the whole catalogue's item-to-item table: every item's own neighbours, as asked one at a time
    everything = tmp_path / "all.parquet"
    assert main(["similar", "--model", str(model), "--items", "all", "--top-n", "4", "--out", str(everything)]) == 0
    table, items = pd.read_parquet(everything), EASE.load(model).items_.ids
    assert table["item"].drop_duplicates().tolist() == items.tolist() and len(table) == 4 * len(items)
    one = EASE.load(model).similar_df([items[7]], n=4)
    pd.testing.assert_frame_equal(table[table["item"] == items[7]].reset_index(drop=True), one, check_dtype=False)


def test_recommend_writes_names_beside_ids(movie_log, ease_dir, tmp_path):
    folder, log = movie_log
    model = ease_dir
    out = tmp_path / "top.parquet"
    assert main(["recommend", "--model", str(model), "--interactions", str(folder / "pairs.tsv"), "--out", str(out),
                 "--top-n", "3", "--item-names", str(folder / "movies.dat.gz"), "-q"]) == 0
    top = pd.read_parquet(out)
    assert (top["name"] == [f"Film {i - 101} - été ({1990 + i - 101})" for i in top["item"]]).all()
    in_python = EASE.load(model).recommend_df(log[log["user"] < 5], n=3, item_names=folder / "movies.dat.gz")
    assert in_python["name"].str.startswith("Film").all()


def test_side_tables_are_read_as_published(tmp_path):
    movies = tmp_path / "movies.csv"
    movies.write_text('movieId,title,genres\n1,"Toy Story (1995)",Animation\n2,Jumanji (1995),Adventure\n')
    table = read_side_table(movies)
    assert table.index.name == "movieId" and table.loc["1", "title"] == "Toy Story (1995)"
    users = tmp_path / "users.dat"
    users.write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    assert list(read_side_table(users).columns) == ["gender", "age", "occupation", "zip"]
    twice = tmp_path / "names.tsv"
    twice.write_text("item\tname\n7\tA\n8\tB\n7\tC\n")
    with pytest.raises(DataError, match=r"names.tsv: ID '7' appears twice \(lines 2 and 4\)"):
        read_side_table(twice)


def test_a_published_header_is_understood_and_the_columns_taken_are_said(tmp_path, caplog):
    lastfm = tmp_path / "user_artists.dat"  # Last.fm HetRec's own header
    lastfm.write_text("userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n")
    progress = logging.getLogger("recvae.progress")  # the CLI, run by other tests, may have stopped propagation
    progress.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger="recvae.progress"):
        frame = read_interactions(lastfm)
    assert frame["item"].tolist() == [51, 52] and frame["rating"].tolist() == [13883, 11690]
    assert "user = column 'userID', item = column 'artistID', rating = column 'weight', timestamp: none" in caplog.text
    upper = tmp_path / "upper.csv"
    upper.write_text("USER_ID,ITEM_ID\n1,2\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recvae.progress"):
        assert read_interactions(upper)["item"].tolist() == [2]
    progress.removeHandler(caplog.handler)
    assert "user = column 'USER_ID', item = column 'ITEM_ID', rating: none, timestamp: none" in caplog.text


def test_evaluate_shows_test_users_whole_with_names(movie_log, ease_dir, tmp_path, capsys):
    folder, _ = movie_log
    model = ease_dir
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--no-tracking", "--examples", "2",
                 "--item-names", str(folder / "movies.dat.gz")]) == 0
    out = capsys.readouterr().out
    assert out.count("user ") >= 2 and "history 1" in out and "Film " in out and "  1. 1" in out
    from recvae.evaluate import example_users
    from recvae.pipeline import EvaluateSpec, evaluate_saved

    result = evaluate_saved(EvaluateSpec(model_dir=str(model), examples=2))
    frame = result.examples
    assert set(frame["part"]) == {"history", "recommended"} and frame["user"].nunique() == 2
    split, loaded = result.split, EASE.load(model)
    again = example_users(loaded, split.test, split.users, 2)
    pd.testing.assert_frame_equal(frame, again)
    # held_out marks exactly the recommended items among the user's held-out ones
    for user, rows in frame.groupby("user"):
        row = int(np.flatnonzero(split.users.id_of(split.test.users) == user)[0])
        hidden = set(split.items.id_of(split.test.target[row].indices).tolist())
        recommended = rows[rows["part"] == "recommended"]
        assert recommended["held_out"].tolist() == [item in hidden for item in recommended["item"]]
