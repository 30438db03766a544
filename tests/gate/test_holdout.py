"""The gate's holdout file: a faithful round trip, one data version at a time, rebuilt when unreadable."""

from __future__ import annotations

import numpy as np

from gate.holdout import GateHoldout
from longview.settings import get_settings
from training.models import Queries
from training.sequences import Holdout


def holdout(key: str, profiles: bool = True) -> GateHoldout:
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 20, size=n) for n in (0, 3, 7)]
    queries = Queries(histories, np.array([1e9, 2e9, 3e9]), np.array([1e9 - 5, 2e9 - 5, 3e9 - 5]),
                      rng.random((3, 4)).astype(np.float32) if profiles else None)
    test = Holdout(["u1", "ü2", "u 3"], queries, [np.array([4]), np.array([5, 6]), np.array([7])])
    return GateHoldout(key, [f"i{n}" for n in range(1, 20)], rng.random((20, 5)).astype(np.float32), test,
                       {"popularity": np.array([0.0, 0.5, 1.0]), "item_knn": np.array([0.25, 0.0, 0.125])})


def test_a_saved_holdout_comes_back_the_same(tmp_path):
    settings = get_settings(home=tmp_path)
    original = holdout("abc")
    original.save(settings)
    again = GateHoldout.load(settings, "abc")
    assert again is not None and again.item_ids == original.item_ids and again.test.users == original.test.users
    assert all(np.array_equal(a, b) for a, b in zip(again.test.queries.histories, original.test.queries.histories))
    assert all(np.array_equal(a, b) for a, b in zip(again.test.truth, original.test.truth))
    for name in ("now", "last", "profiles"):
        assert np.array_equal(getattr(again.test.queries, name), getattr(original.test.queries, name))
    assert np.array_equal(again.content, original.content)
    assert again.baselines.keys() == original.baselines.keys()
    assert all(np.array_equal(again.baselines[n], original.baselines[n]) for n in original.baselines)
    bare = holdout("def", profiles=False)
    bare.content = None
    bare.save(settings)
    back = GateHoldout.load(settings, "def")
    assert back.test.queries.profiles is None and back.content is None
    assert GateHoldout.load(settings, "abc") is None, "one data version at a time: the older file is gone"


def test_an_unreadable_holdout_is_rebuilt_not_trusted(tmp_path):
    settings = get_settings(home=tmp_path)
    path = holdout("abc").save(settings)
    path.write_bytes(path.read_bytes()[:50])
    assert GateHoldout.load(settings, "abc") is None
    path.write_bytes(b"not a zip at all")
    assert GateHoldout.load(settings, "abc") is None
    assert GateHoldout.load(settings, "never-saved") is None
    wrong = holdout("ghi")
    wrong.baselines["popularity"] = np.array([0.5])  # per-user figures of other users: not this holdout's
    wrong.save(settings)
    assert GateHoldout.load(settings, "ghi") is None
    from training.long_term_value import Visits

    torn = holdout("jkl")  # visits whose profile rows do not match their visits: rebuilt, not trusted
    torn.visits = Visits(["u1", "u2"], Queries([np.array([1]), np.array([2, 3])], np.array([1e9, 2e9]),
                                               np.array([1e9, 2e9]), np.zeros((1, 4), dtype=np.float32)),
                         np.array([1.0, 40.0]), np.array([True, False]))
    torn.save(settings)
    assert GateHoldout.load(settings, "jkl") is None
    torn.visits.queries.profiles = np.zeros((2, 4), dtype=np.float32)
    torn.save(settings)
    back = GateHoldout.load(settings, "jkl")
    assert back is not None and back.visits.users == ["u1", "u2"] and back.visits.returned.tolist() == [True, False]
