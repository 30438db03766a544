"""How a registered version is served: its own ranking, or (``serving.policy`` "engagement", a
sequence model) the engagement-aware policy, with the weights `longview tune engagement` chose for
that version (its ``engagement_weights`` tag) where there are such and ``engagement.use_tuned`` is
on, else the ``engagement`` settings' weights. The service, the simulator and the gate all call
``as_served``, so what is simulated and judged is what users get."""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError

from longview.sections import EngagementSettings
from longview.settings import Settings

WEIGHTS_TAG = "engagement_weights"
TUNED = ("value_weight", "diversity_weight", "novelty_weight")  # what tuning chooses; the rest stay settings

log = logging.getLogger(__name__)


def tuned_weights(tags: dict | None) -> dict | None:
    """The weights in a version's ``engagement_weights`` tag, checked against the settings' bounds;
    None where there is no tag, or (with a warning) where it is not valid: a registry tag is input."""
    text = (tags or {}).get(WEIGHTS_TAG)
    if not text:
        return None
    try:
        found = json.loads(text)
        if not isinstance(found, dict) or set(found) != set(TUNED):
            raise ValueError(f"expected exactly {', '.join(TUNED)}")
        checked = EngagementSettings(**found)
    except (ValueError, TypeError, ValidationError) as exc:
        log.warning("the version's %s tag is ignored (%s): the settings' weights apply",
                    WEIGHTS_TAG, " ".join(str(exc).split())[:200])
        return None
    return {name: getattr(checked, name) for name in TUNED}


def served_weights(settings: Settings, tags: dict | None = None) -> dict:
    """The engagement policy's weights for a version with these registry ``tags``."""
    weights = settings.engagement.weights(settings.seed)
    tuned = tuned_weights(tags) if settings.engagement.use_tuned else None
    return {**weights, **(tuned or {})}


def as_served(settings: Settings, packaged, tags: dict | None = None):
    """``packaged`` (a PackagedModel) as the service serves it."""
    if settings.serving.policy == "engagement" and hasattr(packaged, "under_policy"):
        return packaged.under_policy(served_weights(settings, tags))
    return packaged


def version_tags(settings: Settings, version: str) -> dict:
    """A registered version's tags."""
    from longview.settings import REGISTERED_MODEL
    from training.tracking import mlflow_client

    return dict(mlflow_client(settings).get_model_version(REGISTERED_MODEL, str(version)).tags)
