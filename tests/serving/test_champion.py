"""The champion follower's loading choices on the demo's registry: the serving policy, and the int8
copy when `serving.quantize` is set."""

from __future__ import annotations

from serving.champion import ChampionFollower
from tests.conftest import settings_of
from training.models.quantize import is_quantized


def test_the_follower_serves_the_int8_copy_when_quantize_is_set(trained, monkeypatch):
    monkeypatch.setenv("LONGVIEW_SERVING__QUANTIZE", "true")
    settings = settings_of(trained.home)
    assert settings.serving.quantize
    follower = ChampionFollower(settings)
    follower.check()
    served = follower.current
    assert served is not None and served.policy == "engagement" and is_quantized(served.model)
    ranked = served.model.slots([served.model.item_ids[:5]], [1.7e9], 5, [1.7e9 - 3600], seeds=[1])[0]
    assert len(ranked) == 5
    monkeypatch.delenv("LONGVIEW_SERVING__QUANTIZE")
    plain = ChampionFollower(settings_of(trained.home))
    plain.check()
    assert not is_quantized(plain.current.model)
