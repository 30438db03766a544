"""The engagement-aware policy: every term changes the lists the way it says, the long-term value of
a candidate comes from the value head, exploration is seeded and its propensities are right, and the
lists respect the exclusion rule whatever the input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from longview.settings import EngagementSettings
from training.models import Interactions, Queries
from training.models.engagement import EngagementPolicy
from training.models.ranking import exclude_seen, top_k
from training.models.sequence import SequenceModel

from .test_value_head import fit_with_head, returning_world, visit_end_queries, visit_world

ONLY = {"value_weight": 0.0, "diversity_weight": 0.0, "novelty_weight": 0.0, "exploration": 0.0}


def last_item_world(users: int = 120, items: int = 30, seed: int = 0) -> Interactions:
    """Visits of three random items; a visit that ends on one of items 1-15 is followed by the next
    half a day later, one that ends on items 16-30 twenty days later: what the user consumes last
    decides whether they come back within the week."""
    return visit_world(users, items, seed, lambda rng, _user: rng.integers(1, items + 1),
                       lambda _user, last: 0.5 if last <= 15 else 20.0)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A sequence model with a value head, on last_item_world."""
    model, settings, _ = fit_with_head(last_item_world(), tmp_path_factory.mktemp("home"))
    return model, settings


def policy(fitted, **weights) -> EngagementPolicy:
    model, settings = fitted
    options = settings.model_copy(update={"engagement": EngagementSettings(**{**ONLY, **weights})})
    return EngagementPolicy.around(model, options)


def queries(users: int = 40, position: int = 8) -> Queries:
    return visit_end_queries(last_item_world(users, seed=1), position)


def test_the_default_weights_are_all_on_and_change_the_lists(fitted):
    defaults = EngagementSettings()
    assert min(defaults.value_weight, defaults.diversity_weight, defaults.novelty_weight, defaults.exploration) > 0
    model, settings = fitted
    asked = queries()
    plain = top_k(exclude_seen(model.score(asked), asked.histories), 10).numpy()
    lists = EngagementPolicy.around(model, settings).lists(asked, 10).items
    assert (lists != plain).any(axis=1).mean() > 0.5, "the defaults should reorder most users' lists"


def test_with_every_weight_at_zero_the_policy_is_the_sequence_ranking(fitted):
    model, _ = fitted
    asked = queries()
    plain = top_k(exclude_seen(model.score(asked), asked.histories), 10).numpy()
    lists = policy(fitted).lists(asked, 10)
    assert np.array_equal(lists.items, plain)
    assert np.all(lists.propensities == 1.0) and not lists.explored.any()
    assert np.all(np.diff(lists.scores, axis=1) <= 1e-9), "greedy slots come in order of their objective"


def test_the_value_term_favours_items_after_which_users_come_back(fitted):
    """Ending a visit on one of items 1-15 is followed by a return within the week in this world;
    the head's P(return | history + candidate) must say so, and the value weight must lift them."""
    asked = queries()
    values = policy(fitted, value_weight=1.0)._values(asked, np.tile(np.arange(1, 31), (len(asked), 1)))
    assert values[:, :15].mean() > values[:, 15:].mean() + 0.2
    plain = policy(fitted).lists(asked, 10).items
    valued = policy(fitted, value_weight=20.0).lists(asked, 10).items
    assert (valued <= 15).mean() > (plain <= 15).mean()


def test_each_candidates_value_is_the_forecast_after_consuming_it(fitted):
    model, _ = fitted
    asked = queries(5)
    candidates = np.tile(np.array([2, 9, 17, 30]), (5, 1))
    fast = policy(fitted, value_weight=1.0)._values(asked, candidates)
    histories = [np.r_[h, c] for h in asked.histories for c in candidates[0]]
    now = np.repeat(asked.now, 4)
    slow = model.forecast_returns(Queries(histories, now, now)).within.reshape(5, 4)
    assert np.allclose(fast, slow, atol=1e-5)


def test_mmr_makes_lists_less_alike_and_novelty_less_popular(fitted):
    model, _ = fitted
    asked = queries()
    unit = torch.nn.functional.normalize(model.net.item_embedding.weight.detach(), dim=1).numpy()

    def similarity(items: np.ndarray) -> float:
        vectors = unit[items]
        sims = np.einsum("ukd,uld->ukl", vectors, vectors)
        return float((sims.sum(axis=(1, 2)) - np.einsum("ukk->u", sims)).mean())

    plain = policy(fitted).lists(asked, 10).items
    diverse = policy(fitted, diversity_weight=2.0)
    assert diverse.similarity == "learned", "no content in this world: MMR compares learned item vectors"
    assert similarity(diverse.lists(asked, 10).items) < similarity(plain)
    information = policy(fitted)._self_information()
    novel = policy(fitted, novelty_weight=2.0).lists(asked, 10).items
    assert information[novel].mean() > information[plain].mean()


def test_exploration_is_seeded_and_its_propensities_are_those_of_the_draws(fitted):
    asked = queries(200)
    greedy = policy(fitted).lists(asked, 10)
    first = policy(fitted, exploration=0.3, seed=11).lists(asked, 10)
    again = policy(fitted, exploration=0.3, seed=11).lists(asked, 10)
    other = policy(fitted, exploration=0.3, seed=12).lists(asked, 10)
    assert np.array_equal(first.items, again.items) and np.array_equal(first.propensities, again.propensities)
    assert not np.array_equal(first.items, other.items)
    share = first.explored.mean()
    assert 0.2 < share < 0.35, f"about 30% of slots explored (less the draws that hit the greedy item), got {share:.2f}"
    unseen = np.array([30 - len(set(h)) for h in asked.histories])
    left = unseen[:, None] - np.arange(10)[None, :]  # unseen candidates still unpicked at each slot
    assert np.allclose(first.propensities[first.explored], (0.3 / left)[first.explored])
    kept = ~first.explored
    assert np.all(first.propensities[kept] >= 0.7) and np.all(first.propensities <= 1.0)
    # the first slot, unexplored, is the greedy list's first item
    unexplored_first = ~first.explored[:, 0]
    assert np.array_equal(first.items[unexplored_first, 0], greedy.items[unexplored_first, 0])


def test_per_user_seeds_make_a_users_list_independent_of_the_batch(fitted):
    asked = queries(30)
    chosen = policy(fitted, exploration=0.3)
    seeds = list(range(100, 130))
    whole = chosen.lists(asked, 10, seeds=seeds)
    for user in (0, 7, 29):
        alone = asked.slice(user, user + 1)
        one = policy(fitted, exploration=0.3).lists(alone, 10, seeds=[seeds[user]])
        assert np.array_equal(one.items[0], whole.items[user]) and np.array_equal(one.explored[0], whole.explored[user])
        assert np.allclose(one.propensities[0], whole.propensities[user])
    assert whole.explored.any(), "exploration happened"
    reseeded = chosen.lists(asked, 10, seeds=[s + 1 for s in seeds])
    assert not np.array_equal(reseeded.items, whole.items)
    with pytest.raises(ValueError, match="30 users but 2 seeds"):
        chosen.lists(asked, 10, seeds=[1, 2])


def test_scores_put_the_policys_list_first_and_survive_a_round_trip(fitted, tmp_path):
    chosen = policy(fitted, value_weight=1.0, diversity_weight=0.5, novelty_weight=0.1, exploration=0.1)
    asked = queries()
    scores = chosen.score(asked)
    restored = EngagementPolicy.restore(json.loads(json.dumps(chosen.config())), chosen.tensors())
    assert torch.equal(restored.score(asked), scores), "same seed, same weights: the same lists"
    again = EngagementPolicy.restore(json.loads(json.dumps(chosen.config())), chosen.tensors())
    assert np.array_equal(top_k(scores, 10).numpy(), again.lists(asked, 10).items)


def test_no_value_term_without_request_times_or_a_head(fitted, quick):
    asked = queries()
    untimed = Queries(asked.histories)
    with_value = policy(fitted, value_weight=5.0)
    assert with_value.uses_value(asked) and not with_value.uses_value(untimed)
    assert np.array_equal(with_value.lists(untimed, 10).items, policy(fitted).lists(untimed, 10).items)
    world = returning_world(30)
    ordinal = Interactions(world.item_ids, world.sequences, world.positive)  # order only, no time
    blind = EngagementPolicy()
    report = blind.fit(ordinal, quick, progress=False)
    assert not blind.uses_value() and "no long-term value term" in blind.describe()
    assert any("MMR over learned item vectors" in note for note in report.notes)


def test_a_cold_user_gets_the_most_popular_items_reranked(fitted):
    model, _ = fitted
    cold = Queries([np.zeros(0, dtype=np.int64)], np.array([2e6]), np.array([2e6]))
    items = policy(fitted, diversity_weight=0.5, novelty_weight=0.05, candidates=12).lists(cold, 10).items[0]
    popular = np.argsort(-model.popularity[1:], kind="stable")[:12] + 1
    assert set(items) <= set(popular)


def test_nan_scores_reach_the_gate_and_the_service_gets_an_error_not_a_short_list(fitted):
    model, settings = fitted
    broken = SequenceModel.restore(model.config(), {k: v.clone() for k, v in model.tensors().items()})
    with torch.no_grad():
        broken.net.item_embedding.weight[3] = float("nan")
    wrapped = EngagementPolicy.around(broken, settings)
    assert torch.isnan(wrapped.score(queries())).any()
    with pytest.raises(ValueError, match="produced NaN scores"):
        wrapped.lists(queries(), 10)


def test_k_must_be_positive(fitted):
    with pytest.raises(ValueError, match="k must be at least 1"):
        policy(fitted).lists(queries(), 0)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories=st.lists(st.lists(st.integers(1, 30), max_size=12), min_size=1, max_size=4),
       weights=st.fixed_dictionaries({"value_weight": st.floats(0, 10), "diversity_weight": st.floats(0, 10),
                                      "novelty_weight": st.floats(0, 2), "exploration": st.floats(0, 0.5),
                                      "candidates": st.integers(1, 40)}),
       k=st.integers(1, 40), now=st.one_of(st.none(), st.floats(0, 2e9)))
def test_lists_hold_distinct_unseen_items_with_valid_propensities(fitted, histories, weights, k, now):
    asked = Queries([np.array(h, dtype=np.int64) for h in histories],
                    None if now is None else np.full(len(histories), now),
                    None if now is None else np.full(len(histories), now))
    lists = policy(fitted, **weights).lists(asked, k)
    assert lists.items.shape == (len(histories), k)
    for row, history in enumerate(histories):
        shown = lists.items[row][lists.items[row] > 0]
        assert len(set(shown)) == len(shown) and not set(shown) & set(history)
        assert len(shown) == min(k, 30 - len(set(history)))
        assert np.all((lists.propensities[row, :len(shown)] > 0) & (lists.propensities[row, :len(shown)] <= 1))
        assert np.all(np.isfinite(lists.scores[row, :len(shown)]))


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.integers(0, 29), seed=st.integers(0, 2**32), exploration=st.sampled_from([0.0, 0.02, 0.3, 0.5]),
       diversity=st.sampled_from([0.0, 0.3, 2.0]), value=st.sampled_from([0.0, 3.0]), k=st.integers(1, 35))
def test_a_single_users_list_is_the_vectorised_one_bit_for_bit(fitted, user, seed, exploration, diversity, value, k):
    """The served path (one seeded user, _greedy_one in Python floats) gives the batch loop's
    items, explored flags, scores and propensities exactly, whatever the weights, seed and k."""
    chosen = policy(fitted, exploration=exploration, diversity_weight=diversity, novelty_weight=0.05,
                    value_weight=value)
    alone = queries(30).slice(user, user + 1)
    relevance = chosen._relevance(alone, True)
    n = max(int(chosen.weights["candidates"]), k)
    fast = chosen._rank(alone, relevance, n, [seed], slots=k)
    slow = chosen._rank(alone, relevance, n, [seed], slots=k, one_by_one=False)
    for a, b in zip((fast.items, fast.explored, fast.scores, fast.propensities),
                    (slow.items, slow.explored, slow.scores, slow.propensities), strict=True):
        assert np.array_equal(a, b)
