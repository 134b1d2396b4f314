import gzip

import numpy as np
import pandas as pd
import pytest

from recvae.data import Interactions, Preprocessing, preprocess, read_interactions
from recvae.errors import DataError


def write(path, text, compress=False):
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def test_movielens_dat_with_double_colon(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    frame = read_interactions(path)
    assert list(frame.columns) == ["user", "item", "rating", "timestamp"]
    assert frame["user"].tolist() == [1, 1, 2]
    assert frame["item"].tolist() == [1193, 661, 1193]
    assert frame["rating"].tolist() == [5.0, 3.0, 4.0]


def test_movielens_csv_header_gzip(tmp_path):
    path = write(tmp_path / "ratings.csv.gz", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n", compress=True)
    frame = read_interactions(path)
    assert frame["user"].tolist() == [1, 1]
    assert frame["rating"].tolist() == [4.0, 3.5]


def test_headerless_tsv_and_string_ids(tmp_path):
    path = write(tmp_path / "log.tsv", "alice\tx-1\nbob\tx-2\nalice\tx-2\n")
    frame = read_interactions(path)
    assert frame["user"].tolist() == ["alice", "bob", "alice"]
    data = Interactions.from_frame(frame)
    assert data.users.ids.tolist() == ["alice", "bob"]
    assert data.items.ids.tolist() == ["x-1", "x-2"]
    assert data.matrix.toarray().tolist() == [[1, 1], [0, 1]]


def test_leading_zeros_keep_ids_as_strings(tmp_path):
    frame = read_interactions(write(tmp_path / "log.csv", "007,1\n7,2\n"))
    assert frame["user"].tolist() == ["007", "7"]


def test_ids_looked_up_among_integers_are_read_one_by_one():
    from recvae.data.readers import typed_ids

    # "7.0" is item 7 beside "018" (text: another ID) as it is beside integers only, so an export's answer does
    # not hang on which IDs share a chunk
    assert typed_ids(pd.Series(["018", "7.0", "5"]), "int").tolist() == ["018", 7, 5]
    assert typed_ids(pd.Series(["7.0", "5"]), "int").tolist() == [7, 5]
    assert typed_ids(pd.Series(["018", "7.0", "5"]), "auto").tolist() == ["018", "7.0", "5"]


def test_named_columns_and_other_delimiter(tmp_path):
    path = write(tmp_path / "log.txt", "when;who;what\n5;u1;i1\n6;u2;i1\n")
    frame = read_interactions(path, user="who", item="what", timestamp="when", sep=";")
    assert frame["user"].tolist() == ["u1", "u2"]
    assert frame["timestamp"].tolist() == [5, 6]


def test_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": ["a", "b"], "item_id": [10, 11], "weight": [1.0, 2.0]}).to_parquet(path)
    frame = read_interactions(path)
    assert frame["user"].tolist() == ["a", "b"] and frame["item"].tolist() == [10, 11]
    pd.DataFrame({"user": [1.0, 2.0], "item": [3, 4]}).to_parquet(path)
    assert read_interactions(path)["user"].tolist() == [1, 2]
    assert frame["rating"].tolist() == [1.0, 2.0]


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "log.csv", "1,2\n3,4\n5,6,7\n8,9\n")
    with pytest.raises(DataError, match=r"log\.csv: line 3: expected 2 fields .* found 3"):
        read_interactions(path)


def test_skip_bad_lines_reports_the_count(tmp_path, caplog):
    path = write(tmp_path / "log.csv", "1,2\n3,4\n5,6,7\n,9\n10,11\n")
    frame = read_interactions(path, skip_bad_lines=True)
    assert frame["user"].tolist() == [1, 3, 10]
    assert frame.attrs["skipped_lines"] == 2
    assert "skipped 2 malformed lines" in caplog.text


def test_missing_column(tmp_path):
    path = write(tmp_path / "log.csv", "userId,movieId\n1,2\n")
    with pytest.raises(DataError, match=r"no column 'rating' for rating; the columns are \['userId', 'movieId'\]"):
        read_interactions(path, rating="rating")
    with pytest.raises(DataError, match="cannot tell which column holds the item IDs"):
        read_interactions(write(tmp_path / "other.csv", "userId,foo\n1,2\n"))


def test_empty_and_nan_ids_name_the_line(tmp_path):
    with pytest.raises(DataError, match=r"line 3: empty or missing user ID"):
        read_interactions(write(tmp_path / "a.csv", "user,item\n1,2\n,3\n"))
    with pytest.raises(DataError, match=r"line 1: empty or missing item ID.*1 more such line"):
        read_interactions(write(tmp_path / "b.csv", "1,NaN\n2,\n"))
    with pytest.raises(DataError, match=r"row 2: empty or missing user ID"):
        path = tmp_path / "c.parquet"
        pd.DataFrame({"user": [1.0, None], "item": [1, 2]}).to_parquet(path)
        read_interactions(path)


def test_nan_text_in_id_column(tmp_path):
    with pytest.raises(DataError, match=r"line 2: empty or missing item ID"):
        read_interactions(write(tmp_path / "c.tsv", "1\t5\n2\t \n"))


def test_empty_file_and_header_only(tmp_path):
    with pytest.raises(DataError, match="the file is empty"):
        read_interactions(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataError, match="has a header but no rows"):
        read_interactions(write(tmp_path / "head.csv", "user,item\n"))


def test_wrong_delimiter_is_named(tmp_path):
    path = write(tmp_path / "log.csv", "1\t2\n3\t4\n")
    with pytest.raises(DataError, match=r"1 field with delimiter ','.*pass sep='\\t'"):
        read_interactions(path)


def test_non_numeric_rating(tmp_path):
    with pytest.raises(DataError, match=r"line 3: rating is not a number"):
        read_interactions(write(tmp_path / "r.csv", "user,item,rating\n1,2,4\n1,3,five\n"))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        read_interactions(tmp_path)


def test_damaged_gzip(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="cannot read the file"):
        read_interactions(path)


def test_preprocessing_paper_steps():
    frame = pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3],
            "item": [1, 2, 2, 1, 3, 2, 1, 2, 3, 4],
            "rating": [5, 4, 2, 5, 1, 5, 4, 5, 4, 5.0],
        }
    )
    out = preprocess(frame, Preprocessing(min_rating=4, min_user_interactions=2, min_item_interactions=2))
    # (1, 2) keeps its last rating, 2, which the threshold drops; items 3 and 4 are then too rare,
    # and user 1 is left with one item
    assert sorted(zip(out["user"], out["item"])) == [(2, 1), (2, 2), (3, 1), (3, 2)]


def test_no_user_left_after_filtering():
    frame = pd.DataFrame({"user": [1, 2], "item": [1, 1]})
    with pytest.raises(DataError, match="no interaction left after preprocessing"):
        preprocess(frame, Preprocessing(min_user_interactions=5))


def test_threshold_without_rating_column():
    with pytest.raises(DataError, match="no rating column"):
        preprocess(pd.DataFrame({"user": [1], "item": [1]}), Preprocessing(min_rating=4))


def test_real_ids_round_trip_through_vocabulary():
    frame = pd.DataFrame({"user": ["b", "a", "b"], "item": [30, 10, 10]})
    data = Interactions.from_frame(frame)
    rows, cols = data.matrix.nonzero()
    pairs = set(zip(data.users.id_of(rows), data.items.id_of(cols)))
    assert pairs == {("b", 30), ("a", 10), ("b", 10)}
    assert data.items.index_of([10, 30]).tolist() == [0, 1]
    with pytest.raises(DataError, match="unknown item ID 99"):
        data.items.index_of([99])
    assert np.array_equal(data.items.index_of([99, 10], missing="ignore"), [-1, 0])


def test_an_ignored_column_is_not_taken_for_a_position(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,rating\n1,2,5\n1,3,4\n")
    frame = read_interactions(path, rating=False)  # False is a bool, not column 0
    assert list(frame.columns) == ["user", "item"] and frame["item"].tolist() == [2, 3]


def test_a_quoted_id_keeps_its_spaces_and_a_number_its_value(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text('user,item\n" spaced ",a\nplain,"b "\n 7 ,a\n')
    frame = read_interactions(path, user="user", item="item")
    assert frame["user"].tolist() == [" spaced ", "plain", " 7 "] and frame["item"].tolist() == ["a", "b ", "a"]
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("user,item\n 7 ,1\n7,2\n")
    assert read_interactions(numbers)["user"].tolist() == [7, 7]


def test_a_quoted_header_as_recvae_writes_csv_is_a_header(tmp_path):
    # recvae's writers quote text ("user","item"): the reader took that line for an interaction once
    path = tmp_path / "synthetic.csv"
    path.write_text('"user","item"\n"synthetic-1","i00005"\n"synthetic-1","i00007"\n')
    frame = read_interactions(path)
    assert list(frame["user"]) == ["synthetic-1", "synthetic-1"] and list(frame["item"]) == ["i00005", "i00007"]


@pytest.mark.parametrize("rating, shown", [([4.0, np.nan], "first nan, at index 1"), ([4, "x"], "first 'x', at index 1"),
                                           ([np.inf, 3.0], "first inf, at index 0")])
def test_a_frames_rating_that_is_not_a_finite_number_is_named(rating, shown):
    """A frame built in Python has no file line to name: its index does (a NaN would be a NaN weight in training)."""
    frame = pd.DataFrame({"user": [1, 2], "item": [5, 6], "rating": rating})
    with pytest.raises(DataError, match=f"rating column has 1 value\\(s\\) that are not finite numbers \\({shown}\\)"):
        Interactions.from_frame(frame)


def test_preprocessing_and_synthetic_settings_of_the_wrong_kind_are_named():
    from recvae.data import SyntheticLog
    from recvae.errors import ParameterError

    with pytest.raises(ParameterError, match="min_rating='4': must be a number"):
        Preprocessing(min_rating="4")
    with pytest.raises(ParameterError, match="n_users='5': must be a whole number"):
        SyntheticLog(n_users="5")
    assert Preprocessing(min_rating=4).min_rating == 4 and Preprocessing(min_rating=None).min_rating is None
    with pytest.raises(TypeError, match=r"config must be a Preprocessing, e.g. Preprocessing\(min_rating=3.5\), not float"):
        preprocess(pd.DataFrame({"user": [1], "item": [1], "rating": [4.0]}), 3.5)


def test_the_pipelines_specs_check_their_kinds_and_take_paths_and_lists(tmp_path):
    from recvae.errors import ParameterError
    from recvae.pipeline import DataSpec, EvaluateSpec, SplitSpec, TrainSpec

    for build, words in ((lambda: TrainSpec(resume="yes"), "resume='yes': must be true or false"),
                         (lambda: SplitSpec(heldout_users="600"), "heldout_users='600': must be a whole number"),
                         (lambda: EvaluateSpec(model_dir="m", examples="3"), "examples='3': must be a whole number"),
                         (lambda: DataSpec(path=5), "path=5: must be text")):
        with pytest.raises(ParameterError, match=words):
            build()
    spec = TrainSpec(out=tmp_path / "model", checkpoint_dir=tmp_path / "ck", metrics=["ndcg@10"],
                     data=DataSpec(path=tmp_path / "log.csv"))
    assert (spec.out, spec.metrics, spec.data.path) == (str(tmp_path / "model"), ("ndcg@10",), str(tmp_path / "log.csv"))
    assert EvaluateSpec(model_dir=tmp_path, cold_start=[0, 1]).cold_start == (0, 1)
