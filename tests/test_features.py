"""Side features encoded for models: kinds, missing and extra IDs, bad cells, a year from a title, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from recvae.data.features import FeatureEncoding, fit_features
from recvae.data.side import read_side_table
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, ParameterError


@pytest.fixture
def movies(tmp_path):
    path = tmp_path / "movies.csv"
    rows = ["movieId,title,genres,price,studio"]
    rows += [f"{i},Film {i} ({1950 + i}),{'Drama|Comedy' if i % 2 else 'Action'},{i * 1.5},{'ABC'[i % 3]}" for i in range(1, 41)]
    rows += ["99,Not In The Log (2001),Drama,3.0,A"]  # an extra row
    path.write_text("\n".join(rows) + "\n")
    return path


def test_each_kind_is_encoded_and_ids_without_a_row_are_missing_not_dropped(movies, caplog):
    items = Vocabulary(np.arange(1, 43), "item")  # 41 and 42 have no row
    table = read_side_table(movies)
    with caplog.at_level("INFO"):
        encoding = fit_features(table, items, year_from_title=True, numeric=("price",))
    assert "2 of 42 items have no row" in caplog.text and "1 rows name no item of the log" in caplog.text
    kinds = {c.name: c.kind for c in encoding.columns}
    assert kinds == {"genres": "multi", "price": "numeric", "studio": "categorical", "year": "numeric"}
    x = encoding.transform(table, items).toarray()
    names = encoding.names()
    assert x.shape == (42, encoding.width) and len(names) == encoding.width
    col = {n: i for i, n in enumerate(names)}
    assert x[0, col["genres=Drama"]] == x[0, col["genres=Comedy"]] == 1 and x[1, col["genres=Action"]] == 1
    assert x[0, col["studio=B"]] == 1 and x[:40, col["studio=other"]].sum() == 0
    price = x[:40, col["price"]]
    assert abs(price.mean()) < 1e-5 and abs(price.std() - 1) < 1e-4  # standardised over the items with a row
    assert np.corrcoef(x[:40, col["year"]], np.arange(1, 41))[0, 1] > 0.999  # read from "(1951)"...
    for missing in ("genres missing", "price missing", "studio missing", "year missing"):
        assert list(x[:, col[missing]]) == [0.0] * 40 + [1.0, 1.0]  # the two IDs without a row
    assert x[40:].sum() == 8  # nothing but the missing indicators


def test_new_ids_and_unseen_values_are_encoded_as_fitted(movies, tmp_path):
    items = Vocabulary(np.arange(1, 41), "item")
    encoding = fit_features(read_side_table(movies), items, max_categories=2)
    assert [c for c in encoding.columns if c.name == "studio"][0].categories == ("B", "C")  # the 2 most frequent
    again = FeatureEncoding.from_json(encoding.to_json())
    assert again == encoding
    later = tmp_path / "later.csv"
    later.write_text("movieId,title,genres,price,studio\n7,New,Western|Drama,2.0,Z\n")
    x = again.transform(read_side_table(later), Vocabulary(np.array([7]), "item")).toarray()[0]
    col = {n: i for i, n in enumerate(again.names())}
    assert x[col["studio=other"]] == 1 and x[col["genres=Drama"]] == 1 and x[col["genres missing"]] == 0


def test_bad_side_data_is_refused_naming_file_line_and_column(movies, tmp_path):
    items = Vocabulary(np.arange(1, 41), "item")
    bad = tmp_path / "bad.csv"
    bad.write_text(movies.read_text().replace("\n5,Film 5 (1955),Drama|Comedy,7.5,C", "\n5,Film 5 (1955),Drama|Comedy,cheap,C"))
    with pytest.raises(DataError, match=r"bad\.csv: line 6, column 'price': 'cheap' is not a number"):
        fit_features(read_side_table(bad), items, numeric=("price",))
    with pytest.raises(DataError, match="no column 'budget'"):
        fit_features(read_side_table(movies), items, columns=("budget",))
    with pytest.raises(ParameterError, match="columns='genres': must be a sequence of texts"):
        fit_features(read_side_table(movies), items, columns="genres")  # was read as the columns 'g', 'e', ...
    with pytest.raises(DataError, match="none of its 41 IDs is one of the 3 items"):
        fit_features(read_side_table(movies), Vocabulary(np.array([500, 501, 502]), "item"))
    plain = tmp_path / "plain.csv"
    plain.write_text("movieId,genres\n1,Drama\n")
    with pytest.raises(ParameterError, match="needs a title column"):
        fit_features(read_side_table(plain), items, year_from_title=True)
    encoding = fit_features(read_side_table(movies), items)
    with pytest.raises(DataError, match="no column 'price', which the features were fitted with"):
        encoding.transform(read_side_table(plain), items)
