"""training/served_policy.py: a version's tuned weights are read from a registry tag, which is
input like any other: anything but three in-range numbers is ignored, with a warning, and the
settings' weights apply."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from longview.settings import get_settings
from training.served_policy import TUNED, WEIGHTS_TAG, served_weights, tuned_weights

GOOD = {"value_weight": 1.5, "diversity_weight": 0.6, "novelty_weight": 0.0}


def tags(value) -> dict:
    return {WEIGHTS_TAG: value if isinstance(value, str) else json.dumps(value)}


def test_a_valid_tag_replaces_the_three_weights_and_nothing_else():
    settings = get_settings()
    weights = served_weights(settings, tags(GOOD))
    assert {k: weights[k] for k in TUNED} == GOOD
    defaults = settings.engagement.weights(settings.seed)
    assert {k: v for k, v in weights.items() if k not in TUNED} == {k: v for k, v in defaults.items() if k not in TUNED}
    assert served_weights(settings, {}) == defaults == served_weights(settings, None)
    off = settings.model_copy(update={"engagement": settings.engagement.model_copy(update={"use_tuned": False})})
    assert served_weights(off, tags(GOOD)) == off.engagement.weights(off.seed)


@pytest.mark.parametrize("value", [
    "not json", "[1, 2, 3]", "null", '"3"',
    {**GOOD, "value_weight": 1e9},  # out of the settings' range
    {**GOOD, "novelty_weight": -1},
    {**GOOD, "diversity_weight": "NaN"},
    {**GOOD, "exploration": 0.5},  # tuning never sets the exploration: a tag may not either
    {k: v for k, v in GOOD.items() if k != "novelty_weight"},
    {**GOOD, "value_weight": "__import__('os')"},
])
def test_a_bad_tag_is_ignored_with_a_warning(value, caplog):
    with caplog.at_level(logging.WARNING):
        assert tuned_weights(tags(value)) is None
    assert "tag is ignored" in caplog.text


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=20), st.one_of(
    st.floats(allow_nan=True), st.text(max_size=10), st.none(), st.integers()), max_size=5)))
def test_any_tag_gives_in_range_weights_or_none(value):
    found = tuned_weights(tags(value))
    assert found is None or (set(found) == set(TUNED) and all(0 <= v <= 100 for v in found.values()))
