"""Every model through the one interface: fit, score the whole catalogue, save and restore."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st

from longview.settings import MODEL_NAMES, Settings
from tests.training.conftest import chain_world
from training.models import Interactions, Queries
from training.models.base import PROFILE_FIELDS, profile_vectors
from training.models.item_matrix import EASE, ItemKNN
from training.models.popularity import ItemClock, Popularity, RecentPopularity
from training.models.ranking import exclude_seen, top_k
from training.models.sequence import SequenceModel, training_rows
from training.registry import BASELINES, MODELS, model_class


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_scores_the_whole_catalogue_and_survives_a_round_trip(name, world, quick, tmp_path):
    model = model_class(name)()
    model.fit(world, quick, progress=False)
    queries = Queries([world.sequences[0][:5], np.zeros(0, dtype=np.int64)], np.array([2e6, 2e6]))
    scores = model.score(queries)
    assert scores.shape == (2, world.n_items + 1) and scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all(), "padding can never be recommended"
    assert torch.isfinite(scores[:, 1:]).all()
    # Saved as JSON plus tensors, loaded without unpickling anything.
    path = tmp_path / "state.pt"
    torch.save(model.tensors(), path)
    config = json.loads(json.dumps(model.config()))
    again = model_class(name).restore(config, torch.load(path, weights_only=True))
    assert torch.equal(again.score(queries), scores)


def test_registry_names_every_model_once():
    assert set(BASELINES) < set(MODELS) and "sequence" in MODELS
    assert tuple(MODELS) == MODEL_NAMES, "the `model` setting offers exactly the registry's models"
    assert tuple(Settings().baselines) == BASELINES, "`longview train` evaluates every baseline by default"
    with pytest.raises(ValueError, match="unknown model 'gru'"):
        model_class("gru")


def test_popularity_counts_positive_engagements_only(world, quick):
    world.positive[0][:] = False  # user 0's items do not count
    model = Popularity()
    model.fit(world, quick)
    expected = np.bincount(np.concatenate(world.sequences[1:]), minlength=world.n_items + 1)[1:]
    share = model.score(Queries([np.zeros(0, dtype=np.int64)]))[0, 1:].numpy()
    assert np.allclose(share * expected.sum(), expected)


def test_recent_popularity_counts_only_the_window_before_each_request(quick):
    day = 86_400.0
    items = np.array([1, 1, 2, 3, 3, 3])
    times = np.array([0, 1, 9, 20, 21, 22]) * day
    data = chain_world(users=1, items=3)
    data.sequences, data.positive, data.times = [items], [np.ones(6, dtype=bool)], [times]
    model = RecentPopularity()
    model.fit(data, quick)  # 7-day window
    scores = model.score(Queries([np.zeros(0, dtype=np.int64)] * 2, np.array([10 * day, 23 * day])))
    assert scores[0].argmax() == 2, "on day 10 only item 2 was engaged with in the last 7 days"
    assert scores[1].argmax() == 3
    assert scores[0, 1] > scores[0, 3], "outside the window, all-time popularity breaks the tie"
    no_time = chain_world()
    no_time.times = None
    with pytest.raises(ValueError, match="needs real event times"):
        RecentPopularity().fit(no_time, quick)


# recent_popularity's window is tested below; the engagement policy re-ranks popularity's top (test_engagement.py).
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODELS if n not in ("recent_popularity", "engagement")])
def test_a_user_without_history_gets_the_popularity_ranking(name, world, quick):
    model = model_class(name)()
    model.fit(world, quick, progress=False)
    scores = model.score(Queries([np.zeros(0, dtype=np.int64)], np.array([2e6])))[0, 1:]
    counts = torch.as_tensor(world.counts()[1:])
    most = torch.argsort(counts, descending=True, stable=True)[:3]
    assert torch.equal(torch.argsort(scores, descending=True, stable=True)[:3], most)


@pytest.mark.parametrize("cls", [EASE, ItemKNN])
def test_item_models_recommend_what_co_occurs(cls, quick):
    # Two disjoint tastes: users of items 1-3 and users of items 4-6.
    seqs = [np.array([1, 2, 3])] * 10 + [np.array([4, 5, 6])] * 10
    data = chain_world(users=1, items=6)
    data.sequences, data.positive, data.times = seqs, [np.ones(3, dtype=bool)] * 20, None
    model = cls()
    model.fit(data, quick)
    scores = model.score(Queries([np.array([1, 2]), np.array([5])]))
    assert scores[0, 3] > scores[0, 4:].max()
    assert scores[1, 4] > scores[1, 1:4].max() and scores[1, 6] > scores[1, 1:4].max()


def test_item_models_pick_their_parameter_on_validation(world, quick):
    seen = []

    def validate(model):
        seen.append(model.value)
        return -abs(model.value - 200.0)  # the callback prefers 200

    report = EASE().fit(world, quick, validate=validate)
    assert report.chosen == {"l2": 200.0} and len(seen) >= 3


@pytest.mark.slow
def test_sequence_model_learns_what_comes_next(world, quick):
    model = SequenceModel()
    report = model.fit(world, quick, progress=False)
    assert report.epochs == 30 and report.curve[-1]["loss"] < report.curve[0]["loss"]
    histories = [np.array([3, 4, 5]), np.array([10, 11])]
    scores = model.score(Queries(histories))
    assert scores.argmax(dim=1).tolist() == [6, 12], "after i comes i + 1"
    popularity = Popularity()
    popularity.fit(world, quick)
    assert popularity.score(Queries(histories)).argmax(dim=1).tolist() != [6, 12]


def with_sequence(settings, **options):
    return settings.model_copy(update={"sequence": settings.sequence.model_copy(update=options)})


def time_blind(settings):
    return with_sequence(settings, time_signals=False)


@pytest.mark.slow
def test_sequence_model_early_stops_and_keeps_the_best_state(world, quick):
    calls = []

    def validate(model):
        calls.append(len(calls))
        return [0.1, 0.5, 0.2, 0.2, 0.2, 0.2][len(calls) - 1]

    model = SequenceModel()
    report = model.fit(world, time_blind(quick), validate=validate, progress=False)
    assert report.chosen == {"epoch": 10.0}, "the second validation pass (epoch 10) was the best"
    assert report.epochs == 25 and any("early stop" in note for note in report.notes)


@pytest.mark.slow
def test_an_ensemble_averages_networks_each_chosen_on_validation(world, quick):
    settings = with_sequence(quick, ensemble=2, epochs=10, time_signals=False)
    scored_by = []

    def validate(model):
        scored_by.append(len(model.nets))
        return [0.3, 0.2, 0.1, 0.4, 0.5][len(scored_by) - 1]

    model = SequenceModel()
    report = model.fit(world, settings, validate=validate, progress=False)
    assert scored_by == [1, 1, 1, 1, 2], "each network on its own validation passes, then the ensemble once"
    assert report.chosen == {"epoch": 5.0, "epoch_member_1": 10.0}
    assert {row["member"] for row in report.curve} == {0.0, 1.0} and report.epochs == 20
    assert any(note.startswith("ensemble of 2 networks: validation 0.5") for note in report.notes)
    queries = Queries([np.array([3, 4, 5]), np.array([9])])
    alone = [SequenceModel([net], model.popularity, model.options).score(queries) for net in model.nets]
    assert not torch.allclose(alone[0], alone[1]), "the networks were trained from different seeds"
    assert torch.allclose(model.score(queries)[:, 1:], (alone[0] + alone[1])[:, 1:] / 2, atol=1e-6)
    # Saved and restored whole: both networks come back.
    again = SequenceModel.restore(json.loads(json.dumps(model.config())), model.tensors())
    assert len(again.nets) == 2 and torch.equal(again.score(queries), model.score(queries))
    # The first network is the one a single-network fit trains.
    single = SequenceModel()
    single.fit(world, with_sequence(settings, ensemble=1), progress=False)
    first = SequenceModel()
    first.fit(world, settings, progress=False)
    assert all(torch.equal(v, first.nets[0].state_dict()[k]) for k, v in single.net.state_dict().items())


def test_training_targets_are_positive_engagements_unless_set_to_all(world):
    world.positive[0][5] = False  # user 0's sixth interaction: in the input, not a target by default
    world.positive[1][:] = False  # user 1: nothing positive
    users, inputs, labels, _ = training_rows(world, 8)
    assert users[:2] == [0, 2], "a user without a positive engagement has nothing to learn from"
    sequence, first = world.sequences[0][-9:], len(world.sequences[0]) - 9  # the last max_len + 1 items
    assert inputs[0].tolist() == sequence[:-1].tolist()
    # label k is the item at window position k + 1: the sixth interaction is label 5 - first - 1
    assert labels[0].tolist() == [0 if k == 5 - first - 1 else item for k, item in enumerate(sequence[1:].tolist())]
    users, _, labels, _ = training_rows(world, 8, all_targets=True)
    assert users[:2] == [0, 1] and labels[0].tolist() == sequence[1:].tolist()


@pytest.mark.slow
def test_sequence_model_is_deterministic_with_a_seed(world, quick):
    a, b = SequenceModel(), SequenceModel()
    a.fit(world, quick, progress=False)
    b.fit(world, quick, progress=False)
    q = Queries([np.array([1, 2, 3])])
    assert torch.equal(a.score(q), b.score(q))


@pytest.mark.slow
def test_sequence_model_trains_the_same_whatever_the_order_of_users(world, quick):
    """User ids are pseudonyms keyed per data home, so the order users come in must not matter."""
    a = SequenceModel()
    a.fit(world, quick, progress=False)
    order = np.random.default_rng(1).permutation(len(world.sequences))
    shuffled = Interactions(world.item_ids, [world.sequences[i] for i in order], [world.positive[i] for i in order],
                            [world.times[i] for i in order])
    b = SequenceModel()
    b.fit(shuffled, quick, progress=False)
    q = Queries([np.array([1, 2, 3]), np.array([17])])
    assert torch.equal(a.score(q), b.score(q))


@pytest.mark.slow
def test_sequence_model_answers_the_same_whatever_the_batch(world, quick):
    """Invariance: a user's scores do not depend on who else is in the batch (padding is masked)."""
    model = SequenceModel()
    model.fit(world, quick, progress=False)
    alone = model.score(Queries([np.array([7, 8])]))
    beside_longer = model.score(Queries([np.array([7, 8]), np.array([1, 2, 3, 4, 5, 6, 7, 8])]))
    assert torch.allclose(alone[0], beside_longer[0], atol=1e-5)


@pytest.mark.slow
def test_sequence_model_sampled_softmax_option_learns_too(world, quick):
    settings = quick.model_copy(update={"sequence": quick.sequence.model_copy(update={"negatives": 8})})
    model = SequenceModel()
    model.fit(world, settings, progress=False)
    assert model.score(Queries([np.array([3, 4, 5])])).argmax().item() == 6


@pytest.mark.slow
def test_content_gives_an_unseen_item_a_score(world, quick):
    """Fused content: an item nobody engaged with shares the content of item 6 and is scored like it."""
    n = world.n_items
    content = np.zeros((n + 2, n + 1), dtype=np.float32)
    content[1:n + 1, :n] = np.eye(n)
    content[n + 1] = content[6]  # the new item: the same content as item 6
    world.item_ids.append("new")
    world.content = content
    model = SequenceModel()
    model.fit(world, quick, progress=False)
    scores = model.score(Queries([np.array([3, 4, 5])]))[0]
    assert scores[n + 1] > torch.median(scores[1:n + 1]), "the new item ranks with the items like it"


@pytest.mark.slow
def test_sequence_model_rejects_indices_outside_its_catalogue(world, quick):
    model = SequenceModel()
    model.fit(world, quick, progress=False)
    with pytest.raises(IndexError):
        model.score(Queries([np.array([world.n_items + 5])]))


@pytest.mark.slow
def test_sequence_model_time_signals_raise_what_is_recent_at_the_request(world, quick):
    model = SequenceModel()
    model.fit(world, time_blind(quick), progress=False)
    assert model.clock is None and model.blend["recent"] == 0.0, "time-blind when told so"
    last = max(t[-1] for t in world.times)
    burst = world.sequences[0][:1].repeat(40)  # forty recent engagements with one item
    world.sequences.append(np.r_[world.sequences[1], burst])
    world.positive.append(np.ones(len(world.sequences[-1]), dtype=bool))
    later = last + 10 * 86_400.0  # ten days after everything else
    world.times.append(np.r_[world.times[1], later + 60.0 * np.arange(1, 41)])
    model.clock = ItemClock.of(world)
    model.blend = {"recent": 1.0, "popularity": 0.0, "days": 1.0}
    history = [world.sequences[2][:6]]
    before = model.score(Queries(history, np.array([later])))[0]  # an empty one-day window
    after = model.score(Queries(history, np.array([later + 41 * 60.0])))[0]  # the burst in it
    item = int(burst[0])
    assert after[item] - before[item] == pytest.approx(np.log1p(40), rel=1e-5)
    others = np.setdiff1d(np.arange(1, world.n_items + 1), [item])
    assert torch.allclose(after[others], before[others]), "only the item engaged with recently moves"
    assert model.score(Queries(history))[0].isfinite()[1:].all(), "no request time: time-blind scores"


@pytest.mark.slow
def test_sequence_model_picks_time_signal_weights_on_validation(world, quick):
    model = SequenceModel()
    report = model.fit(world, quick, validate=lambda m: 0.1 + 0.01 * m.blend["recent"], progress=False)
    # The largest recent weight wins; the all-time weights tie, and ties go to the smallest weights.
    assert (report.chosen["recent_weight"], report.chosen["popularity_weight"]) == (4.0, 0.0)
    assert "time signals" in report.notes[-1]
    blind = SequenceModel()
    report = blind.fit(world, quick, validate=lambda m: 0.1, progress=False)
    assert (report.chosen["recent_weight"], report.chosen["popularity_weight"]) == (0.0, 0.0), \
        "nothing helps: the smallest weights, time-blind"


def genre_world(users: int = 80, per_genre: int = 15, length: int = 10, seed: int = 0) -> Interactions:
    """Two genres (items 1..15 and 16..30); each user stays in one, engaging with its items in a
    random order: what a user engaged with says which genre comes next."""
    rng = np.random.default_rng(seed)
    sequences = []
    for u in range(users):
        first = 1 + (u % 2) * per_genre
        sequences.append(rng.choice(np.arange(first, first + per_genre), size=length, replace=False).astype(np.int64))
    ids = [f"i{n}" for n in range(1, 2 * per_genre + 1)]
    return Interactions(ids, sequences, [np.ones(length, dtype=bool)] * users,
                        [1_000_000.0 + 3600.0 * np.arange(length)] * users)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sequence", "ease", "item_knn"])
def test_more_history_in_a_genre_raises_its_share_of_the_list(name, quick):
    """Directional: adding items of genre A to a mixed history gives genre A more of the top 10."""
    model = model_class(name)()
    model.fit(genre_world(), quick, progress=False)
    a_items = np.arange(1, 16)
    mixed = np.array([1, 16, 2, 17])
    more_a = np.array([1, 16, 2, 17, 3, 4, 5])
    scores = exclude_seen(model.score(Queries([mixed, more_a])), [mixed, more_a])
    share = [np.isin(row, a_items).mean() for row in top_k(scores, 10).numpy()]
    assert share[1] > share[0], share
    assert not np.isin(top_k(scores, 10)[1].numpy(), more_a).any(), "minimum functionality: only unseen items"


@pytest.mark.slow
def test_training_precision_follows_the_setting_and_the_hardware(world, quick, monkeypatch):
    from training.models import sequence_loss as sequence

    assert sequence.training_dtype("float32") == torch.float32
    assert sequence.training_dtype("bfloat16") == torch.bfloat16
    monkeypatch.setattr(sequence, "bfloat16_native", lambda: False)
    assert sequence.training_dtype("auto") == torch.float32, "emulated bfloat16 is slower: auto keeps float32"
    monkeypatch.setattr(sequence, "bfloat16_native", lambda: True)
    assert sequence.training_dtype("auto") == torch.bfloat16
    report = SequenceModel().fit(world, quick.model_copy(update={"sequence": quick.sequence.model_copy(
        update={"precision": "bfloat16"})}), progress=False)
    assert "training precision: bfloat16 softmax matmuls" in report.notes
    assert all(np.isfinite(row["loss"]) for row in report.curve)


@pytest.mark.slow
def test_items_new_since_training_are_scored_by_their_content(quick):
    """A catalogue that grew: the sequence model (content fused) ranks a new item by its content,
    before anyone engaged with it; a model of ids alone leaves it unscored; content of another
    layout is not taken in."""
    from training.evaluation import Reindexed
    from training.models.packaged import PackagedModel

    world = genre_world()
    genres = np.zeros((31, 2), dtype=np.float32)
    genres[1:16, 0] = genres[16:, 1] = 1.0
    world.content = genres
    model = SequenceModel()
    model.fit(world, quick, progress=False)
    packaged = PackagedModel().load({"model": "sequence", "model_config": model.config(), "item_ids": world.item_ids},
                                    model.tensors())
    today = [*world.item_ids, "new_a", "new_b"]
    content = np.vstack([genres, [[1.0, 0.0], [0.0, 1.0]]]).astype(np.float32)
    scorer = Reindexed(packaged, today, content)
    assert scorer.added == ["new_a", "new_b"]
    scores = scorer.score(Queries([np.array([1, 2, 3, 4]), np.array([16, 17, 18, 19])]))
    assert torch.isfinite(scores[:, 31:]).all()
    assert scores[0, 31] > scores[0, 32] and scores[1, 32] > scores[1, 31], "each new item goes to its genre's fans"
    top = top_k(exclude_seen(scores.clone(), [np.array([1, 2, 3, 4])] * 2), 30)[0].numpy()
    assert 31 in top, "the new item of the user's genre makes the list"

    fresh = PackagedModel().load({"model": "sequence", "model_config": model.config(), "item_ids": world.item_ids},
                                 model.tensors())
    assert fresh.add_items(["new_c"], np.ones((1, 5), dtype=np.float32)) == [], "another content layout"
    ease = EASE()
    ease.fit(world, quick, progress=False)
    id_only = PackagedModel().load({"model": "ease", "model_config": ease.config(), "item_ids": world.item_ids},
                                   ease.tensors())
    assert Reindexed(id_only, today, content).added == []
    assert torch.isneginf(Reindexed(id_only, today, content).score(Queries([np.array([1, 2])]))[0, 31:]).all()


@pytest.mark.slow
def test_the_request_hour_is_a_side_input_where_data_has_time(quick):
    """Directional: users watch genre A (items 1..15) at night and genre B (16..30) by day; the
    same history gets more of A when the request comes at night. Without times there is no context."""
    rng = np.random.default_rng(0)
    sequences, times = [], []
    for _ in range(80):
        night = rng.random(12) < 0.5
        days = 1_000_000 // 86_400 + np.arange(12)
        times.append(days * 86_400.0 + np.where(night, 2, 14) * 3600.0)
        sequences.append(np.where(night, rng.integers(1, 16, 12), rng.integers(16, 31, 12)).astype(np.int64))
    data = Interactions([f"i{n}" for n in range(1, 31)], sequences, [np.ones(12, dtype=bool)] * 80, times)
    settings = time_blind(quick)
    model = SequenceModel()
    model.fit(data, settings, progress=False)
    assert model.config()["context_features"] > 0
    history = np.array([1, 16, 2, 17])
    day = 2_000_000 // 86_400 * 86_400.0
    at = {hour: model.score(Queries([history], np.array([day + hour * 3600.0]), np.array([day - 86_400.0])))
          for hour in (2, 14)}
    share = {hour: np.isin(top_k(exclude_seen(s, [history]), 10)[0].numpy(), np.arange(1, 16)).mean()
             for hour, s in at.items()}
    assert share[2] > share[14], share
    assert torch.equal(model.score(Queries([history])), model.score(Queries([history]))), "no time: no context"

    data.times = None
    blind = SequenceModel()
    blind.fit(data, settings, progress=False)
    assert blind.config()["context_features"] == 0 and blind.net.context_projection is None


@pytest.mark.parametrize("compiled, dtype, tolerance", [(False, torch.float32, 1e-5), (True, torch.float32, 1e-5),
                                                         (False, torch.bfloat16, 3e-2)])
def test_full_softmax_loss_has_autograds_loss_and_gradients(compiled, dtype, tolerance, monkeypatch):
    """The hand-written backward (sliced, fused, optionally bfloat16 matmuls) against autograd
    through F.cross_entropy over the catalogue without its padding row."""
    from training.models import sequence_loss as sequence

    monkeypatch.setattr(sequence, "LOSS_CHUNK", 8)  # several slices
    monkeypatch.setattr(sequence, "LOSS_PAD", 4)  # 30 rows padded to 32: the padding must add nothing
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(30, 16, generator=generator, requires_grad=True)
    table = torch.randn(41, 16, generator=generator, requires_grad=True)
    targets = torch.randint(1, 41, (30,), generator=generator)
    loss = sequence.full_softmax_loss(hidden * 1.0, targets, table * 1.0, compiled, dtype)
    mine = hidden.grad.clone(), table.grad.clone()
    hidden.grad, table.grad = None, None
    expected = torch.nn.functional.cross_entropy(hidden @ table[1:].T, targets - 1)
    expected.backward()
    assert float(loss) == pytest.approx(float(expected.detach()), rel=tolerance)
    assert torch.allclose(mine[0], hidden.grad, atol=tolerance * float(hidden.grad.abs().max()))
    assert torch.allclose(mine[1], table.grad, atol=tolerance * float(table.grad.abs().max()))
    assert not mine[1][0].any(), "padding gets no gradient"


@pytest.mark.slow
def test_the_users_profile_is_a_side_input_where_data_has_time(quick):
    """Directional: users whose profile says "taste A" engage with genre A (items 1..15) next, the
    others with B (16..30), whatever their (mixed) histories; the same history then gets more of A
    with an A profile. The profile rides with the model through save and restore."""
    rng = np.random.default_rng(0)
    sequences, times, profiles = [], [], []
    for user in range(80):
        fan = user % 2 == 0
        mixed = rng.integers(1, 31, 12)
        next_items = rng.integers(1, 16, 12) if fan else rng.integers(16, 31, 12)
        sequences.append(np.where(np.arange(12) % 2 == 1, next_items, mixed).astype(np.int64))
        times.append(1_000_000.0 + 3600.0 * np.arange(12))
        profiles.append(profile_vectors([{"events_7d": 3, "taste": [1.0, 0.0] if fan else [0.0, 1.0]}] * 12, 2))
    data = Interactions([f"i{n}" for n in range(1, 31)], sequences, [np.ones(12, dtype=bool)] * 80, times,
                        profiles=profiles)
    model = SequenceModel()
    model.fit(data, time_blind(quick), progress=False)
    assert model.profile_width == len(PROFILE_FIELDS) + 2
    restored = SequenceModel.restore(json.loads(json.dumps(model.config())), model.tensors())
    history, now, last = np.array([1, 16, 2, 17]), np.array([2_000_000.0]), np.array([1_990_000.0])
    share = {}
    for taste in ([1.0, 0.0], [0.0, 1.0]):
        vector = profile_vectors([{"events_7d": 3, "taste": taste}], 2)
        scores = restored.score(Queries([history], now, last, vector))
        assert torch.equal(scores, model.score(Queries([history], now, last, vector)))
        share[taste[0]] = np.isin(top_k(exclude_seen(scores, [history]), 10)[0].numpy(), np.arange(1, 16)).mean()
    assert share[1.0] > share[0.0], share
    unknown = model.score(Queries([history], now, last))  # no profile: zeros, not an error
    assert torch.isfinite(unknown[0, 1:]).all()


HOSTILE = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                    st.text(max_size=5), st.lists(st.floats(allow_nan=True), max_size=4), st.booleans())


@settings_hypothesis(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.dictionaries(st.sampled_from([*PROFILE_FIELDS, "taste", "other"]), HOSTILE)),
                max_size=6), st.integers(0, 4))
def test_profile_vectors_turn_any_profile_into_bounded_finite_inputs(rows, width):
    """Whatever Feast (or a request) hands over: missing rows, NaN, infinities, strings, huge or
    negative numbers, a taste of the wrong width. Each becomes a finite, bounded input, zero where
    the value means nothing."""
    vectors = profile_vectors(rows, width)
    assert vectors.shape == (len(rows), len(PROFILE_FIELDS) + width) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and (vectors >= 0).all()
    assert (vectors[:, :len(PROFILE_FIELDS)] <= np.log1p(36_500.0) + 1e-4).all()
    assert (vectors[:, len(PROFILE_FIELDS):] <= 1.0).all()
    for row, vector in zip(rows, vectors, strict=True):
        if not row:
            assert not vector.any(), "no profile reads as zeros"


def test_profile_vectors_read_counts_on_a_log_scale_and_the_taste_as_given():
    vector = profile_vectors([{"events_7d": 3, "active_days": "9", "taste": [0.25, 0.75], "mean_dwell": 50}], 2)[0]
    assert vector[PROFILE_FIELDS.index("events_7d")] == pytest.approx(np.log1p(3))
    assert vector[PROFILE_FIELDS.index("active_days")] == pytest.approx(np.log1p(9))
    assert vector[-2:].tolist() == [0.25, 0.75]
    assert not profile_vectors([{"taste": [0.5, 0.5, 0.0]}], 2)[0].any(), "a taste of another width is not read"


@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), seed=st.integers(0, 2**16))
@settings_hypothesis(max_examples=40, deadline=None)
def test_encode_last_is_the_last_position_of_encode(lengths, seed):
    """The serving path computes only the last position in the last block (and skips the mask where
    nothing is padding): the same state as the full encoder's last position, padded batches too."""
    from training.models.base import padded
    from training.models.sasrec_net import SASRecNet

    torch.manual_seed(seed)
    net = SASRecNet(20, 12, dim=16, blocks=2, heads=2, dropout=0.0).eval()
    rng = np.random.default_rng(seed)
    sequences = padded([rng.integers(1, 21, n) for n in lengths], max(lengths))
    with torch.no_grad():
        assert torch.allclose(net.encode_last(sequences), net.encode(sequences)[:, -1], atol=1e-5)


@pytest.mark.parametrize("length", [0, 1, 6])
def test_encoding_a_history_once_for_many_last_items_matches_encoding_each(length):
    """SASRecNet.encode_appended (the policy's value of each candidate) is exact, not an approximation."""
    from training.models.sasrec_net import SASRecNet

    torch.manual_seed(0)
    net = SASRecNet(20, 8, dim=16, blocks=2, heads=2, dropout=0.0).eval()
    history = torch.randint(1, 21, (length,))
    candidates = torch.tensor([3, 7, 7, 20])
    with torch.no_grad():
        fast = net.encode_appended(history, candidates)
        each = net.encode(torch.stack([torch.cat([history, c[None]]) for c in candidates]))[:, -1]
    assert torch.allclose(fast, each, atol=1e-5)
    with pytest.raises(ValueError, match="no room for a candidate"):
        net.encode_appended(torch.randint(1, 21, (8,)), candidates)
