"""The envs and the runner give exactly the values they gave before the speed work.

`tests/golden_episodes.py` recorded fixed-seed episodes (observations, per-junction rewards,
SUMO's trip records) with the per-lane implementation; the vectorised one must reproduce them.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden_episodes import CASES, GOLDEN_FILE, tiny_network


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN_FILE)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    return tiny_network(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_episode_equals_its_golden_record(case, golden, network, tmp_path):
    got = CASES[case](network, tmp_path)
    for key, value in got.items():
        expected = golden[f"{case}/{key}"]
        assert value.shape == expected.shape, key
        if value.dtype.kind in "US":
            assert (value == expected).all(), key
        else:
            np.testing.assert_array_equal(value, expected, err_msg=f"{case}/{key}")
