"""Models logged as MLflow models-from-code load and rank without this checkout, unpickling nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.training.conftest import chain_world
from training.models import Queries
from training.models.base import PROFILE_FIELDS
from training.models.popularity import Popularity
from training.models.sequence import SequenceModel
from training.packaging import PACKAGE, log_packaged_model
from training.tracking import mlflow_client

# Run in a fresh interpreter where importing the checkout's packages fails.
LOADER = textwrap.dedent("""
    import importlib.abc, json, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("training", "longview", "serving"):
                raise ImportError(f"{name} must not be needed to load the model")
    sys.meta_path.insert(0, Block())
    import mlflow.pyfunc, pandas as pd
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model(sys.argv[2])
    rows = pd.DataFrame({"user_id": ["a", "b", "c"], "history": [["i3", "i4", "i5"], [], ["i9", "unknown"]],
                         "now": [0.0, 0.0, 0.0]})
    out = model.predict(rows, params={"k": 3})
    print(json.dumps({"items": out["items"].tolist(), "fallback": out["fallback"].tolist(),
                      "schema": [c.name for c in model.metadata.get_input_schema().inputs]}))
""")


@pytest.fixture
def logged(quick):
    """A brief sequence model and popularity, each logged in an MLflow run of a fresh home."""
    world = chain_world()
    mlflow_client(quick)
    infos = {}
    for model in (SequenceModel(), Popularity()):
        model.fit(world, quick, progress=False)
        with mlflow.start_run():
            infos[model.name] = (model, log_packaged_model(model, world.item_ids, quick))
    return quick, world, infos


@pytest.mark.slow
def test_logged_models_rank_in_a_process_without_the_checkout(logged, tmp_path):
    settings, world, infos = logged
    for name, (model, info) in infos.items():
        run = subprocess.run([sys.executable, "-c", LOADER, settings.tracking_uri, info.model_uri],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(run.stdout.strip().splitlines()[-1])
        assert out["schema"] == ["user_id", "history", "now", "last_event", *PROFILE_FIELDS, "taste"]
        expected = model.score(Queries([np.array([3, 4, 5])]))[0]
        expected[[3, 4, 5]] = float("-inf")
        assert out["items"][0][0] == f"i{int(expected.argmax())}", name
        assert not {"i3", "i4", "i5"} & set(out["items"][0]), "seen items are not recommended again"
        assert out["fallback"][1] == "popularity: no known history" and out["fallback"][0] is None
        assert len(out["items"][2]) == 3, "an unknown item in a history is left out, not an error"


@pytest.mark.slow
def test_the_model_carries_its_code_under_a_name_of_its_own(logged):
    settings, _, infos = logged
    _, info = infos["sequence"]
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    from pathlib import Path

    code = Path(local) / "code" / PACKAGE
    assert (code / "sequence.py").exists() and (code / "packaged.py").exists()
    assert not list(Path(local).rglob("*.pkl")), "nothing pickled"
    assert info.signature.params.to_dict()[0]["name"] == "k"


@pytest.mark.slow
def test_a_corrupted_artifact_is_refused_clearly(logged):
    settings, _, infos = logged
    _, info = infos["sequence"]
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    from pathlib import Path

    weights = next(Path(local).rglob("weights.pt"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(Exception, match="artifact is unreadable or corrupted"):
        mlflow.pyfunc.load_model(local)


@pytest.mark.slow
def test_bad_requests_are_clear_errors(logged):
    _, _, infos = logged
    _, info = infos["popularity"]
    model = mlflow.pyfunc.load_model(info.model_uri)
    with pytest.raises(Exception, match="history"):
        model.predict(pd.DataFrame({"user_id": ["a"]}))


@pytest.mark.slow
def test_request_times_that_are_missing_or_not_numbers(quick):
    """A missing or NaN time ranks without the request context (the same list as no times at all);
    a time that is not a number is a clear error, not a crash deep in the model."""
    from training.models.packaged import PackagedModel

    world = chain_world()
    model = SequenceModel()
    model.fit(world, quick, progress=False)
    packaged = PackagedModel().load({"model": "sequence", "model_config": model.config(), "item_ids": world.item_ids},
                                    model.tensors())
    plain = packaged.rank([["i3", "i4"]], None, 5)
    assert packaged.rank([["i3", "i4"]], [float("nan")], 5, [1_000_000.0]) == plain
    assert packaged.rank([["i3", "i4"]], [2_000_000.0], 5, [None]) == plain
    timed = packaged.rank([["i3", "i4"]], [2_000_000.0], 5, [1_000_000.0])
    assert [i for i, _ in timed[0]] and all(np.isfinite(s) for _, s in timed[0])
    with pytest.raises(ValueError, match="Unix seconds"):
        packaged.rank([["i3", "i4"]], ["tomorrow"], 5, [1_000_000.0])


@pytest.fixture(scope="module")
def timed_model(tmp_path_factory):
    """A brief sequence model with request-time side inputs (module-scoped: hypothesis reuses it)."""
    from longview.settings import get_settings
    from training.models.packaged import PackagedModel

    settings = get_settings(home=tmp_path_factory.mktemp("home"),
                            sequence={"dim": 16, "ensemble": 1, "epochs": 5, "dropout": 0.0, "max_len": 8, "batch_size": 16})
    world = chain_world()
    model = SequenceModel()
    model.fit(world, settings, progress=False)
    assert model.net.context_projection is not None
    return PackagedModel().load({"model": "sequence", "model_config": model.config(), "item_ids": world.item_ids},
                                model.tensors())


@settings(max_examples=40, deadline=None)
@example(now=1.7e308, last=-1.7e308)
@example(now=1e300, last=0.0)
@example(now=0.0, last=1e300)
@given(now=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
       last=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_any_request_times_rank_without_nan_or_crash(timed_model, now, last):
    """Property: whatever the times (negative, huge, NaN, infinite, a last event after the
    request), the model ranks k distinct unseen items with finite scores."""
    ranked = timed_model.rank([["i3", "i4"]], [now], 5, [last])[0]
    items = [i for i, _ in ranked]
    assert len(items) == len(set(items)) == 5 and not {"i3", "i4"} & set(items)
    assert all(np.isfinite(s) for _, s in ranked)


def test_new_items_need_one_row_of_content_each(timed_model):
    with pytest.raises(ValueError, match="2 items but 1 rows"):
        timed_model.add_items(["new_a", "new_b"], np.zeros((1, 3), dtype=np.float32))


def test_slots_are_the_ranking_with_its_propensities_and_the_policy_wraps_only_a_sequence_model(timed_model):
    """What the service serves: a plain model's slots are its ranking, deterministic (propensity 1);
    under the engagement policy, the policy's own list, with its exploration logged; ``exclude``
    overrides the exclusion rule per request."""
    from longview.settings import EngagementSettings, get_settings

    histories, now = [["i3", "i4"], ["i9"]], [2_000_000.0, 2_000_000.0]
    plain = timed_model.slots(histories, now, 5)
    assert [[(s.item, s.score) for s in row] for row in plain] == timed_model.rank(histories, now, 5)
    assert all(not s.explored and s.propensity == 1.0 for row in plain for s in row)
    weights = EngagementSettings(exploration=0.5).weights(3)
    policy = timed_model.under_policy(weights)
    assert policy.model_name == "engagement" and timed_model.model_name == "sequence", "a copy: the model is untouched"
    served = policy.slots(histories, now, 8)
    assert all(len(row) == 8 and len({s.item for s in row}) == 8 for row in served)
    assert any(s.explored for row in served for s in row), "half the slots explore"
    assert all(0 < s.propensity <= 1 for row in served for s in row)
    seen = {"i3", "i4"}
    assert not seen & {s.item for s in served[0]}
    everything = policy.slots([["i3", "i4"]], [2_000_000.0], 12, exclude=False)[0]
    assert seen & {s.item for s in everything}, "seen items may come back when the request says so"
    from training.models.packaged import PackagedModel

    world = chain_world()
    model = Popularity()
    model.fit(world, get_settings(), progress=False)
    baseline = PackagedModel().load({"model": "popularity", "model_config": model.config(), "item_ids": world.item_ids},
                                    model.tensors())
    assert baseline.under_policy(weights) is baseline, "a baseline serves its own ranking"


def test_a_user_ranks_the_same_alone_or_in_a_batch_whatever_times_the_others_come_with(timed_model):
    """One user's missing last event or request time must not take the request context away from
    the others in the batch: each user is scored with the inputs it has, as it would be alone."""
    from longview.settings import EngagementSettings

    histories = [["i3", "i4"], ["i9"], ["i5", "i6", "i7"], [], ["i3", "i4"]]
    now = [2_000_000.0, 2_000_000.0, None, 2_000_000.0, float("nan")]
    last = [1_000_000.0, None, 1_500_000.0, None, 1_000_000.0]
    together = timed_model.rank(histories, now, 6, last)
    for user in range(len(histories)):
        alone = timed_model.rank([histories[user]], [now[user]], 6, [last[user]])[0]
        assert [i for i, _ in alone] == [i for i, _ in together[user]]
        assert [s for _, s in alone] == pytest.approx([s for _, s in together[user]], abs=1e-5)
    assert together[0] != together[4], "with and without the request context differ"
    policy = timed_model.under_policy(EngagementSettings(exploration=0.3).weights(5))
    seeds = [11, 12, 13, 14, 15]
    lists = policy.slots(histories, now, 6, last, seeds=seeds)
    for user in range(len(histories)):
        alone = policy.slots([histories[user]], [now[user]], 6, [last[user]], seeds=[seeds[user]])[0]
        assert [(s.item, s.explored, s.propensity) for s in alone] == [(s.item, s.explored, s.propensity)
                                                                      for s in lists[user]]
    with pytest.raises(ValueError, match="5 histories but 2 seeds"):
        policy.slots(histories, now, 6, last, seeds=[1, 2])
    with pytest.raises(ValueError, match="5 histories but 1 times"):
        timed_model.rank(histories, [2_000_000.0], 6)
    assert timed_model.rank([], None, 5) == [] and policy.slots([], None, 5) == []


def test_similar_items_by_the_models_item_representations(timed_model, quick):
    """The sequence model: the cosine over its learned item vectors (and content, where fused),
    most alike first, never the item itself; item-kNN: its co-engagement weights; popularity has
    nothing to compare items by, and an unknown item is a KeyError."""
    import torch

    from training.models.item_matrix import ItemKNN
    from training.models.packaged import PackagedModel

    found, basis = timed_model.similar("i5", 4)
    assert basis.startswith("learned item embeddings") and len(found) == 4
    assert "i5" not in [i for i, _ in found] and [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    table = torch.nn.functional.normalize(timed_model.model.net.item_table().detach(), dim=1)
    index = timed_model.index
    assert timed_model.model.net.content is None, "chain_world has no content: the likeness is the learned one"
    assert found[0][1] == pytest.approx(float(table[index["i5"]] @ table[index[found[0][0]]]), abs=1e-5)
    with pytest.raises(KeyError):
        timed_model.similar("no-such-item", 3)
    world = chain_world()
    knn = ItemKNN()
    knn.fit(world, quick, progress=False)
    packaged = PackagedModel().load({"model": "item_knn", "model_config": knn.config(), "item_ids": world.item_ids},
                                    knn.tensors())
    neighbours, by = packaged.similar("i5", 3)
    assert by.startswith("co-engagement") and "i5" not in [i for i, _ in neighbours]
    own = world.item_ids.index("i5") + 1
    weights = knn.weights[own].clone()
    weights[[0, own]] = float("-inf")
    assert neighbours[0][1] == pytest.approx(float(weights.max()), abs=1e-6)
    popularity = Popularity()
    popularity.fit(world, quick, progress=False)
    plain = PackagedModel().load({"model": "popularity", "model_config": popularity.config(), "item_ids": world.item_ids},
                                 popularity.tensors())
    with pytest.raises(ValueError, match="no item representations"):
        plain.similar("i5", 3)


def test_a_served_users_encoder_state_is_reused_exactly_and_bounded(timed_model, monkeypatch):
    """A single user's encoder state is cached by history: a repeat request (another request time,
    so another context) ranks exactly as a cold one; a longer history is a new entry; the cache is
    bounded and dropped with the item tables."""
    from training.models import sequence_scoring as sequence

    model = timed_model.model
    monkeypatch.setattr(sequence, "STATE_CACHE", 2)
    model._states = None
    cold = timed_model.rank([["i3", "i4"]], [2_000_000.0], 6, [1_000_000.0])
    warm = timed_model.rank([["i3", "i4"]], [2_500_000.0], 6, [1_000_000.0])
    model._states = None
    assert timed_model.rank([["i3", "i4"]], [2_500_000.0], 6, [1_000_000.0]) == warm
    assert timed_model.rank([["i3", "i4"]], [2_000_000.0], 6, [1_000_000.0]) == cold
    timed_model.rank([["i3", "i4", "i5"]], [2_000_000.0], 6, [1_000_000.0])
    timed_model.rank([["i9"]], [2_000_000.0], 6, [1_000_000.0])
    assert len(model._states[1]) == 2, "bounded: the least recently used history is dropped"
    timed_model.rank([["i3", "i4"], ["i9"]], [2e6, 2e6], 6, [1e6, 1e6])
    assert len(model._states[1]) == 2, "a batch is not cached"
    model._tables = None  # what a refit, a new item or a training epoch does
    timed_model.rank([["i9"]], [2_000_000.0], 6, [1_000_000.0])
    assert len(model._states[1]) == 1, "the cache follows the item tables"


def test_warming_encodes_each_history_as_its_request_would(timed_model, monkeypatch):
    """warm() fills the state cache with each history encoded alone: the users' requests (bare, or
    under the engagement policy) then hit it and rank exactly as cold; the most recent users are
    kept when there are more than the cache holds; empty and unknown histories are skipped; stop()
    ends it early."""
    from longview.settings import get_settings
    from training.models import sequence_scoring as sequence

    model = timed_model.model
    monkeypatch.setattr(sequence, "STATE_CACHE", 3)
    histories = [["i1", "i2"], ["i3", "i4"], [], ["nope"], ["i5", "i6", "i7"], ["i9"]]
    model._states = None
    cold = timed_model.rank([["i3", "i4"]], [2_000_000.0], 6, [1_000_000.0])
    model._states = None
    assert timed_model.warm(histories) == 3
    cache = model._states[1]
    assert len(cache) == 3 and np.array([timed_model.index["i1"], timed_model.index["i2"]]).tobytes() not in cache
    entries = dict(cache)
    assert timed_model.rank([["i3", "i4"]], [2_000_000.0], 6, [1_000_000.0]) == cold
    assert dict(model._states[1]).keys() == entries.keys(), "the request hit the warmed state"
    policy = timed_model.under_policy(get_settings().engagement.weights(0))
    policy.slots([["i9"]], [2_000_000.0], 6, [1_000_000.0], seeds=[1])
    assert dict(policy.model.base._states[1]).keys() == entries.keys(), "so did one under the policy"
    model._states = None
    calls = iter(range(100))
    assert timed_model.warm(histories, stop=lambda: next(calls) >= 1) == 1
    assert len(model._states[1]) == 1


@pytest.mark.parametrize("name", ["os", "Recommender", "PackagedModel", "../popularity", "", "sequence_fit"])
def test_a_config_naming_no_model_of_the_package_is_refused(name):
    """The artifact's config names its model; only a model class of the package itself is ever
    looked up by it (no module or other class a config names is imported or called)."""
    from training.models.packaged import PackagedModel, model_class

    with pytest.raises(ValueError, match="no model named"):
        PackagedModel().load({"model": name, "model_config": {}, "item_ids": ["a"]}, {})
    assert model_class({"model": "popularity"}) is Popularity


def test_the_package_finds_every_registered_model_by_name():
    from longview.model_registry import MODELS
    from training.models.packaged import model_class
    from training.registry import model_class as registered

    assert all(model_class({"model": name}) is registered(name) for name in MODELS)
