import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.split import strong_generalization_split

SMALL = SyntheticLog(n_users=1200, n_items=400, n_groups=8, median_activity=30, seed=7)


@pytest.fixture(scope="session")
def small_log() -> pd.DataFrame:
    return generate_log(SMALL)


@pytest.fixture(scope="session")
def small_data(small_log) -> Interactions:
    return Interactions.from_frame(preprocess(small_log))


@pytest.fixture(scope="session")
def small_split(small_data):
    return strong_generalization_split(small_data, 150, seed=1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def small_log_file(tmp_path_factory):
    """The generated log of 300 users and 80 items as a CSV file, written by `recvae generate`."""
    from recvae.cli import main

    path = tmp_path_factory.mktemp("data") / "log.csv"
    assert main(["generate", "--out", str(path), "--users", "300", "--items", "80"]) == 0
    return path


@pytest.fixture
def tiny_log() -> sp.csr_matrix:
    """120 users x 40 items, each user with at least one item."""
    rng = np.random.default_rng(0)
    dense = (rng.random((120, 40)) < 0.15).astype("float32")
    dense[np.arange(120), rng.integers(0, 40, 120)] = 1.0
    return sp.csr_matrix(dense)
