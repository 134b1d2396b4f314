import numpy as np
import pandas as pd
import pytest

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
