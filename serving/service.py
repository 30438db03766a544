"""The BentoML service: recommendations from the @champion model, fed by the Feast online store."""

from __future__ import annotations

import logging
from typing import Annotated

import bentoml
from pydantic import Field

from longview.feature_store import FeatureStoreError, OnlineFeatureReader, feature_store
from longview.ids import ID_REGEX, MAX_ID_LENGTH
from longview.privacy import pseudonym, pseudonym_key
from longview.settings import get_settings
from serving.ranking import rank_for_user
from training.tracking import CHAMPION, alias_version, load_version, mlflow_client

log = logging.getLogger(__name__)

MAX_K = 100
UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_REGEX,
                              description=f"the user's id (1-{MAX_ID_LENGTH} letters, digits, _.:-)")]
TopK = Annotated[int, Field(ge=1, le=MAX_K, strict=True, description=f"how many items, 1 to {MAX_K}")]


@bentoml.service(name="longview", traffic={"timeout": 30})
class Recommender:
    def __init__(self) -> None:
        settings = get_settings()
        client = mlflow_client(settings)
        champion = alias_version(client, CHAMPION)
        if champion is None:
            raise RuntimeError("no @champion model in the registry: run `longview train` and `longview promote`")
        self.model_version = str(champion.version)
        self.model = load_version(settings, self.model_version)
        self.features = OnlineFeatureReader(feature_store(settings))
        self.key = pseudonym_key(settings)  # callers send their own ids; features are keyed by pseudonym
        log.info("serving longview-recommender version %s", self.model_version)

    @bentoml.api
    def recommend(self, user_id: UserId, k: TopK) -> dict:
        """Top-k items for a user, with scores and the model version that ranked them."""
        try:
            features = self.features.read([pseudonym(self.key, user_id)])
        except FeatureStoreError as exc:  # the caller still gets an answer, labelled as a fallback
            log.error("online features unavailable: %s", exc)
            return rank_for_user(self.model, self.model_version, user_id, {}, k,
                                 why="popularity: the feature store is unavailable")
        row = {name: values[0] for name, values in features.items()}
        return rank_for_user(self.model, self.model_version, user_id, row, k)
