"""The Open Bandit reader: both layouts, obp's features, and a clear refusal of a bad log."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longview.datasets import open_bandit
from longview.datasets.open_bandit import BanditLogError
from tests.conftest import real_data


@pytest.fixture(scope="module")
def sample() -> Path:
    return real_data("open-bandit-sample")


def small_copy(sample: Path, folder: Path, rows: int = 50) -> Path:
    """The first rows of the random log, in the shared sample's layout."""
    (folder / "random").mkdir(parents=True, exist_ok=True)
    pd.read_csv(sample / "random" / "all.csv", index_col=0, dtype=str).head(rows).to_csv(folder / "random" / "all.csv")
    shutil.copy(sample / "random" / "item_context.csv", folder / "random" / "item_context.csv")
    return folder


def test_the_shared_sample_and_obps_bundled_copy_read_the_same(sample):
    shared, bundled = open_bandit.load("random", sample), open_bandit.load("random")
    assert shared.rounds == bundled.rounds == 10_000 and shared.n_actions == 80 and shared.len_list == 3
    assert np.array_equal(shared.action, bundled.action) and np.array_equal(shared.context, bundled.context)
    assert set(np.unique(shared.position)) == {0, 1, 2} and np.allclose(shared.pscore, 1 / 80)
    assert shared.context.shape == (10_000, shared.context.shape[1]) and shared.action_context.shape[0] == 80


def test_features_are_built_as_obps_loader_builds_them(sample):
    """obp 0.4.1's own loader no longer runs on pandas 2 (DataFrame.drop's positional axis), so its
    construction is restated here: one-hot user features (first level dropped) and the affinities."""
    raw = pd.read_csv(sample / "random" / "all.csv", index_col=0)
    users = [c for c in raw if c.startswith("user_feature")]
    expected = np.hstack([pd.get_dummies(raw[users], drop_first=True).to_numpy(float),
                          raw[[c for c in raw if c.startswith("user-item_affinity")]].to_numpy(float)])
    ours = open_bandit.load("random", sample)
    assert np.array_equal(ours.context, expected)
    assert np.array_equal(ours.action, raw["item_id"]) and np.array_equal(ours.position, raw["position"] - 1)
    assert np.array_equal(ours.reward, raw["click"])


def corrupt(folder: Path, row: int, column: str, value: str) -> None:
    path = folder / "random" / "all.csv"
    frame = pd.read_csv(path, index_col=0, dtype=str)
    frame.loc[frame.index[row], column] = value
    frame.to_csv(path)


@pytest.mark.parametrize("column, value, message", [
    ("item_id", "80", "is not an item"), ("item_id", "-1", "is not an item"), ("item_id", "3.5", "is not an item"),
    ("item_id", "x; rm -rf /", "is not a number"), ("position", "0", "is not a slot"), ("click", "2", "is not 0 or 1"),
    ("propensity_score", "0", "is not in (0, 1]"), ("propensity_score", "1.5", "is not in (0, 1]"),
    ("propensity_score", "nan", "is not a number"), ("propensity_score", "", "is not a number"),
    ("propensity_score", "inf", "is not a number"), ("user-item_affinity_0", "high", "affinity is not a number"),
])
def test_a_bad_value_is_refused_with_where_it_is(sample, tmp_path, column, value, message):
    folder = small_copy(sample, tmp_path)
    corrupt(folder, 7, column, value)
    with pytest.raises(BanditLogError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        open_bandit.load("random", folder)
    assert "line" in str(error.value) or "affinity" in message


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "random" / "all.csv").unlink(), "no 'random' log"),
    (lambda f: (f / "random" / "item_context.csv").unlink(), "missing file"),
    (lambda f: (f / "random" / "all.csv").write_text(""), "not a readable CSV|has no rows"),
    (lambda f: (f / "random" / "all.csv").write_bytes(b"\xff\xfe\x00garbage\x00"), "not a readable CSV|missing columns"),
    (lambda f: (f / "random" / "all.csv").write_text(",item_id,position\n0,1,1\n"), "missing columns click"),
    (lambda f: pd.concat([pd.read_csv(f / "random" / "all.csv", index_col=0, dtype=str)] * 2)
        .to_csv(f / "random" / "all.csv"), "repeat an earlier row"),
    (lambda f: pd.read_csv(f / "random" / "item_context.csv", index_col=0).head(40)
        .to_csv(f / "random" / "item_context.csv"), "is not an item|item ids must be"),
])
def test_a_broken_folder_is_refused_clearly(sample, tmp_path, damage, message):
    folder = small_copy(sample, tmp_path)
    damage(folder)
    with pytest.raises(BanditLogError, match=message):
        open_bandit.load("random", folder)


def test_unknown_policy_and_missing_folder(tmp_path):
    with pytest.raises(BanditLogError, match="unknown behaviour policy"):
        open_bandit.load("../etc", tmp_path)
    with pytest.raises(BanditLogError, match="no Open Bandit folder"):
        open_bandit.load("random", tmp_path / "absent")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 49), column=st.sampled_from(["item_id", "position", "click", "propensity_score"]),
       value=st.one_of(st.text(max_size=6), st.floats().map(str), st.integers(-5, 100).map(str)))
def test_any_one_changed_cell_either_reads_or_is_refused_clearly(sample, tmp_path_factory, row, column, value):
    folder = small_copy(sample, tmp_path_factory.mktemp("obd"))
    corrupt(folder, row, column, value)
    try:
        log = open_bandit.load("random", folder)
    except BanditLogError:
        return
    assert log.rounds == 50 and (log.pscore > 0).all() and set(np.unique(log.reward)) <= {0, 1}
    assert ((log.action >= 0) & (log.action < 80)).all() and (log.position >= 0).all()
