"""The adapter to RecSim's interest-evolution environment: episodes end, the measure is the
environment's own, topics are read right, and the engagement policy's served re-ranking runs there."""

from __future__ import annotations

import numpy as np
import pytest

from training.simulation import recsim_env as rs


class ByTopic:
    """Always the candidates of the highest (or lowest) topic ids: RecSim's topics run from the most
    clickbaity (0) to the most nourishing (19)."""

    def __init__(self, nourishing: bool) -> None:
        self.name, self.nourishing = "by topic", nourishing

    def slate(self, history, candidates, vectors, k, rng):
        order = np.argsort([int(c[1:]) for c in candidates], kind="stable")
        return (order[::-1] if self.nourishing else order)[:k].tolist()


def mean_watch_time(policy, episodes: int = 20, seed: int = 3) -> float:
    env, rng = rs.make_env(seed), np.random.default_rng(seed)
    return float(np.mean([rs.run_episode(env, policy, rng)[0].watch_time for _ in range(episodes)]))


def test_an_episode_ends_when_the_budget_is_spent_and_reports_the_watch_time():
    env, rng = rs.make_env(1), np.random.default_rng(1)
    episode, clicked = rs.run_episode(env, rs.RandomCandidates(), rng)
    assert episode.steps > 1 and episode.watch_time > 0 and episode.clicks == len(clicked) <= episode.steps
    assert all(c.startswith("t") and 0 <= int(c[1:]) < rs.TOPICS for c in clicked)


def test_nourishing_topics_keep_users_watching_longer_than_clickbait():
    """The environment's long-term effect, read through the adapter: good quality gives budget back."""
    assert mean_watch_time(ByTopic(nourishing=True)) > 1.2 * mean_watch_time(ByTopic(nourishing=False))


@pytest.mark.parametrize("bad", [[0, 0, 1], [0, 1, 99], [0, 1]])
def test_a_policy_returning_a_bad_slate_is_refused(bad):
    class Bad:
        name = "bad"

        def slate(self, history, candidates, vectors, k, rng):
            return bad
    with pytest.raises(ValueError, match="the bad policy returned"):
        rs.run_episode(rs.make_env(0), Bad(), np.random.default_rng(0))


def test_the_engagement_re_ranking_diversifies_over_the_item_vectors():
    """All candidates equally relevant but two topics far ahead: MMR with a high diversity weight
    shows three different topics, without it the slate holds repeats of the leading topics."""
    candidates = ["t01", "t01", "t01", "t02", "t03", "t04"]
    vectors = np.eye(rs.TOPICS)[[1, 1, 1, 2, 3, 4]]
    scores = {f"t{t:02d}": 0.0 for t in range(rs.TOPICS)} | {"t01": 1.0}
    relevance = rs.ScoredCandidates("sequence", lambda history: scores)
    flat = {c: 0.0 for c in scores}
    diverse = rs.EngagementCandidates(relevance, flat, {"novelty_weight": 0.0, "diversity_weight": 5.0,
                                                        "exploration": 0.0})
    plain = rs.EngagementCandidates(relevance, flat, {"novelty_weight": 0.0, "diversity_weight": 0.0,
                                                      "exploration": 0.0})
    rng = np.random.default_rng(0)
    assert len({candidates[i] for i in diverse.slate([], candidates, vectors, 3, rng)}) == 3
    assert [candidates[i] for i in plain.slate([], candidates, vectors, 3, rng)] == ["t01"] * 3


@pytest.mark.slow
def test_the_sequence_model_learns_from_logs_the_environment_made():
    from longview.settings import get_settings

    logs = rs.logged_histories(40, seed=11)
    settings = get_settings(sequence={"epochs": 2, "ensemble": 1, "content": False, "compile": False})
    scores = rs.sequence_scores(logs, settings)
    found = scores(logs[0][:3])
    assert set(found) == {f"t{t:02d}" for t in range(rs.TOPICS)} and all(np.isfinite(list(found.values())))
    assert np.isclose(np.exp(list(found.values())).sum(), 1.0)
    assert mean_watch_time(rs.ScoredCandidates("sequence", scores), episodes=5) > 0
