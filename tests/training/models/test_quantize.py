"""The int8 copy of a registered model (training/models/quantize.py): its encoder's Linear layers
quantised, the original untouched, the same lists as the float model bar a few numerical swaps,
under the policy too; baselines come back as they are; odd requests rank without crashing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from tests.training.conftest import chain_world
from training.models.quantize import Int8ItemTable, is_quantized, quantized, quantized_linears, scoring_table

NOW, LAST = 2_000_000.0, 1_990_000.0


def _packaged(model, world):
    from training.models.packaged import PackagedModel

    return PackagedModel().load({"model": model.name, "model_config": model.config(), "item_ids": world.item_ids},
                                model.tensors())


@pytest.fixture(scope="module")
def content_world():
    """The chain world with a few content features per item (so the content projection exists)."""
    world = chain_world()
    content = np.random.default_rng(3).normal(size=(world.n_items + 1, 6)).astype(np.float32)
    content[0] = 0.0
    world.content = content
    return world


@pytest.fixture(scope="module")
def trained(tmp_path_factory, content_world):
    """A brief sequence model with content, request-time side inputs and the value head, packaged."""
    from longview.settings import get_settings
    from training.models.sequence import SequenceModel

    settings = get_settings(home=tmp_path_factory.mktemp("home"),
                            sequence={"dim": 16, "ensemble": 1, "epochs": 30, "dropout": 0.0, "max_len": 8,
                                      "batch_size": 16, "learning_rate": 0.01})
    model = SequenceModel()
    model.fit(content_world, settings, progress=False)
    net = model.net
    assert net.content_projection is not None and net.context_projection is not None and net.value_head is not None
    return _packaged(model, content_world)


@pytest.fixture(scope="module")
def int8(trained):
    return quantized(trained)


def _histories(world, users: int = 40) -> list[list[str]]:
    return [[world.item_ids[i - 1] for i in seq[:6]] for seq in world.sequences[:users]]


def test_the_encoder_and_value_head_linears_are_int8_and_the_original_is_untouched(content_world):
    from longview.settings import get_settings
    from training.models.sequence import SequenceModel

    settings = get_settings(sequence={"dim": 16, "ensemble": 2, "epochs": 2, "dropout": 0.0, "max_len": 8,
                                      "batch_size": 16})
    model = SequenceModel()
    model.fit(content_world, settings, progress=False)
    packaged = _packaged(model, content_world)
    histories = _histories(content_world)
    before = {k: v.clone() for k, v in packaged.model.tensors().items()}
    float_lists = packaged.rank(histories, [NOW] * len(histories), 10, [LAST] * len(histories))

    copy = quantized(packaged)

    assert copy is not packaged and copy.model is not packaged.model and is_quantized(copy)
    assert not is_quantized(packaged)
    assert copy.model_name == "sequence" and len(copy.model.nets) == 2
    for net, original in zip(copy.model.nets, packaged.model.nets, strict=True):
        assert net is not original
        names = quantized_linears(net)
        assert {"blocks.0.qkv", "blocks.0.out", "blocks.0.ff.0", "blocks.0.ff.2", "value_head.deep.0",
                "value_head.deep.2"} <= set(names)
        for block in net.blocks:
            assert all(isinstance(layer, DynamicLinear) for layer in (block.qkv, block.out, block.ff[0], block.ff[2]))
        # Kept in float, by design: the item table (built once) and the one-row side inputs.
        for kept in (net.content_projection, net.context_projection, net.value_head.wide):
            assert type(kept) is nn.Linear
        assert torch.equal(net.item_table(), original.item_table()), "the item table stays float32 and exact"
        # The original's layers are still float
        assert not quantized_linears(original)
        assert all(type(m) is nn.Linear for m in original.modules() if isinstance(m, (nn.Linear, DynamicLinear)))
    after = packaged.model.tensors()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert packaged.rank(histories, [NOW] * len(histories), 10, [LAST] * len(histories)) == float_lists
    with pytest.raises(TypeError, match="inference only"):
        copy.model.tensors()
    assert quantized(copy) is copy, "quantising twice changes nothing"


def test_the_int8_lists_agree_with_the_float_ones(trained, int8, content_world):
    histories = _histories(content_world)
    n = len(histories)
    for now, last in ((None, None), ([NOW] * n, [LAST] * n)):
        a = trained.rank(histories, now, 10, last)
        b = int8.rank(histories, now, 10, last)
        overlap = np.mean([len({i for i, _ in x} & {i for i, _ in y}) / 10 for x, y in zip(a, b, strict=True)])
        assert overlap >= 0.8, overlap
        assert all(len(row) == 10 and all(np.isfinite(s) for _, s in row) for row in b)
        # the scores themselves are close: int8 moves a log-probability by little
        diff = np.mean([abs(sa - sb) for x, y in zip(a, b, strict=True) for (ia, sa), (ib, sb) in zip(x, y) if ia == ib])
        assert diff < 0.5, diff
    # what the chain world teaches: after item i comes i + 1, whatever the precision
    top = int8.rank([["i3", "i4", "i5"]], None, 1)[0][0][0]
    assert top == trained.rank([["i3", "i4", "i5"]], None, 1)[0][0][0]
    scores = int8.user_scores(["i3", "i4"], NOW, LAST)
    assert scores.shape == (content_world.n_items,) and np.isfinite(scores).all()
    assert int8.similar("i5", 3) == trained.similar("i5", 3), "item likeness reads the float item table"


def test_a_large_catalogue_is_scored_against_an_int8_item_table(trained, content_world):
    """From int8_table_from items, the sequence model scores against Int8ItemTable (set to 0 here, so
    the chain world's catalogue counts as large): the same lists bar near-ties, the same lesson."""
    import copy

    assert all(isinstance(t, torch.Tensor) for t in trained.model._scoring_tables()), "a small catalogue stays float"
    large = copy.copy(trained)
    large.model = copy.copy(trained.model)
    large.model.int8_table_from, large.model._scorers = 0, None
    histories = _histories(content_world)
    a, b = trained.rank(histories, None, 10), large.rank(histories, None, 10)
    assert all(isinstance(t, Int8ItemTable) for t in large.model._scoring_tables())
    overlap = np.mean([len({i for i, _ in x} & {i for i, _ in y}) / 10 for x, y in zip(a, b, strict=True)])
    assert overlap >= 0.8, overlap
    assert large.rank([["i3", "i4", "i5"]], None, 1)[0][0][0] == trained.rank([["i3", "i4", "i5"]], None, 1)[0][0][0]


@given(rows=st.integers(1, 300), dim=st.integers(1, 32), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_int8_item_table_scores_are_the_float_ones_to_within_rounding(rows, dim, seed):
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(rows, dim, generator=generator)
    hidden = torch.randn(3, dim, generator=generator)
    int8 = Int8ItemTable(table)
    assert int8.shape == (rows, dim)
    exact = hidden @ table.T
    # Rounding to 8 bits moves each weight by at most its row's largest / 255 (one symmetric scale
    # per row). The hidden values are quantised per call to 7 bits on x86 (fbgemm's reduce_range:
    # 128 levels over their range, zero included), so each moves by at most that range / 254. A
    # score moves by at most the sum of the two over the dot product (times 1.5 for the scales' own
    # rounding). The first version of this bound took 8 bits for the hidden values and failed on
    # one example in a few hundred (one dimension, values of both signs).
    per_weight = table.abs().amax(dim=1) / 255
    per_hidden = (hidden.max().clamp(min=0) - hidden.min().clamp(max=0)) / 254
    bound = 1.5 * (hidden.abs().sum(dim=1, keepdim=True) * per_weight + table.abs().sum(dim=1) * per_hidden) + 1e-5
    assert ((int8.scores(hidden) - exact).abs() <= bound).all()
    assert scoring_table(table, rows + 1) is table and isinstance(scoring_table(table, rows), Int8ItemTable)


def test_under_the_policy_either_way_round(trained, int8, content_world):
    from longview.settings import EngagementSettings

    weights = EngagementSettings(exploration=0.2).weights(7)
    float_policy = trained.under_policy(weights)
    policies = {"quantised, then the policy": int8.under_policy(weights),
                "the policy, then quantised": quantized(float_policy)}
    histories = _histories(content_world, 30)
    n = len(histories)
    seeds = list(range(n))
    expected = float_policy.slots(histories, [NOW] * n, 10, [LAST] * n, seeds=seeds)
    for how, policy in policies.items():
        assert policy.model_name == "engagement" and is_quantized(policy), how
        lists = policy.slots(histories, [NOW] * n, 10, [LAST] * n, seeds=seeds)
        assert all(len(row) == 10 and len({s.item for s in row}) == 10 for row in lists), how
        assert all(np.isfinite(s.score) and 0 < s.propensity <= 1 for row in lists for s in row), how
        for history, row in zip(histories, lists, strict=True):
            assert not set(history) & {s.item for s in row}, "seen items stay excluded"
        overlap = np.mean([len({s.item for s in x} & {s.item for s in y}) / 10 for x, y in zip(expected, lists, strict=True)])
        assert overlap >= 0.8, (how, overlap)
        # the same seeded exploration: explored slots line up with the float policy's
        same = np.mean([[a.explored == b.explored for a, b in zip(x, y, strict=True)] for x, y in zip(expected, lists)])
        assert same >= 0.8, (how, same)
        forecast = policy.model.forecast_returns(_queries(policy, histories[:5]))
        assert forecast is not None and np.isfinite(forecast.within).all()
    assert not is_quantized(float_policy) and not quantized_linears(float_policy.model.base.net)
    # the copy's exploration stream is its own: drawing from it leaves the original's where it was
    state = float_policy.model.rng.bit_generator.state
    policies["the policy, then quantised"].slots(histories, [NOW] * n, 10)  # unseeded: draws from the stream
    assert float_policy.model.rng.bit_generator.state == state


def _queries(packaged, histories):
    from training.models.base import Queries

    return Queries([packaged.encode(h) for h in histories], np.full(len(histories), NOW), np.full(len(histories), LAST))


def test_new_items_join_the_copy_alone(trained, content_world):
    """add_items on the int8 copy (the service takes in catalogue items unseen at training) grows
    the copy's catalogue, never the float original's."""
    copy = quantized(trained)
    n = len(trained.item_ids)
    added = copy.add_items(["brand-new"], np.ones((1, content_world.content.shape[1]), dtype=np.float32))
    assert added == ["brand-new"] and len(copy.item_ids) == n + 1
    assert len(trained.item_ids) == n and "brand-new" not in trained.index
    assert trained.model.net.n_items == n and trained.model.popularity.shape == (n + 1,)
    scores = copy.user_scores(["i3", "i4"])
    assert scores.shape == (n + 1,) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["popularity", "item_knn", "ease"])
def test_baselines_come_back_as_they_are(name):
    from longview.settings import get_settings
    from training.registry import MODELS

    world = chain_world()
    model = MODELS[name]()
    model.fit(world, get_settings(), progress=False)
    packaged = _packaged(model, world)
    assert quantized(packaged) is packaged and not is_quantized(packaged)
    assert quantized(packaged.under_policy({})) is packaged


def test_the_registry_copy_of_the_code_is_quantised_too(trained):
    """The service loads models as ``longview_recommender`` (MLflow code_paths), not ``training``:
    quantized() recognises a sequence model by what it holds, not by its class."""
    from training.packaging import staged_code

    with staged_code():
        from longview_recommender.packaged import PackagedModel

        registry = PackagedModel().load(trained.config, trained.model.tensors())
        assert type(registry.model).__module__ == "longview_recommender.sequence"
        copy = quantized(registry)
        assert is_quantized(copy) and quantized_linears(copy.model.net)
        assert isinstance(copy.model, type(registry.model))
        assert copy.rank([["i3", "i4"]], None, 3)[0][0][0] == trained.rank([["i3", "i4"]], None, 3)[0][0][0]


ITEMS = st.sampled_from([f"i{n}" for n in range(1, 31)] + ["unknown", "", "i0", "i31", "I3"])
TIMES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=40, deadline=None)
@example(history=[], now=None, last=None, k=10)
@example(history=["unknown", "nope"], now=NOW, last=LAST, k=5)
@example(history=[f"i{n % 30 + 1}" for n in range(50)], now=NOW, last=None, k=40)
@given(history=st.one_of(st.none(), st.lists(ITEMS, max_size=40)), now=TIMES, last=TIMES,
       k=st.integers(min_value=1, max_value=40))
def test_odd_requests_rank_without_crashing(int8, history, now, last, k):
    """Property: any history (none, empty, unknown items only, repeats, longer than max_len), any
    times and any k: the copy and its policy answer with distinct, unseen items and finite scores."""
    from longview.settings import EngagementSettings

    for model in (int8, int8.under_policy(EngagementSettings().weights(1))):
        slots = model.slots([history], [now], k, [last], seeds=[5])[0]
        items = [s.item for s in slots]
        assert len(items) == len(set(items)) <= k
        assert len(items) == min(k, 30 - len(set(history or []) & set(int8.index)))
        assert not set(history or []) & set(items)
        assert all(np.isfinite(s.score) for s in slots)


def test_the_benchmark_times_both_models_on_the_same_requests(trained, int8, content_world):
    """`longview bench quantization`'s timing (control/bench/quantization.py): single-user
    calls on the test users' inputs, as ids, one torch thread while timing, the caller's after."""
    from control.bench.quantization import _requests, _timed
    from training.models.base import Queries
    from training.sequences import Holdout

    sequences = content_world.sequences[:3]
    holdout = Holdout(["a", "b", "c"], Queries([s[:4] for s in sequences], np.full(3, NOW), np.full(3, LAST)),
                      [s[4:5] for s in sequences])
    requests = _requests(holdout, trained, 7)
    assert len(requests) == 7 and requests[3] == requests[0]
    assert requests[1] == ([f"i{i}" for i in sequences[1][:4]], NOW, LAST)
    threads = torch.get_num_threads()
    times = _timed({"float32": trained, "int8": int8}, requests)
    assert torch.get_num_threads() == threads
    assert set(times) == {"float32", "int8"} and all(len(t) == 7 and (t > 0).all() for t in times.values())
