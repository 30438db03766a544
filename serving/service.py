"""The BentoML service: recommendations from whichever version @champion points at, fed by the Feast
online store.

- It follows the registry (serving/champion.py): a moved alias is loaded in the background and
  swapped in between requests, in the same process; ``/admin/reload`` (always behind the API key)
  asks at once.
- Every list it answers with goes to the served log (longview/served_log.py) with its request id,
  each slot's propensity and the exploration share, written by a background thread every 100 ms.
- ``/feedback`` stores events durably in the outbox before answering and refreshes the users'
  online rows (serving/feedback.py); ``/search`` matches free text against the catalogue's text
  embeddings, blended with the user's scores (serving/search.py).
- It is ready (``/readyz``) once a version and the online reader are loaded, and stays ready when
  degraded: with the online store unreachable, users get the model's cold-start list labelled as a
  fallback and ``"degraded": true``, never a 500. Until then, ``/recommend`` answers 503 with why.
- Requests are strict pydantic models (serving/schemas.py); bodies over ``serving.max_body_bytes``
  get 413; with ``serving.api_key`` set, a POST without it gets 401 (serving/guards.py)."""

from __future__ import annotations

import logging
import time

import bentoml
from starlette.responses import JSONResponse

from longview.feature_store import feature_store
from longview.online_features import OnlineFeatureReader
from longview.privacy import pseudonym, pseudonym_key
from longview.served_log import ServedLog, record_of
from longview.settings import get_settings
from serving.champion import ChampionFollower
from serving.feedback import FeedbackSink, FutureEvent
from serving.guards import ApiKey, BodyLimit
from serving.ranking import FALLBACK_LABELS, STORE_DOWN, exploration_seed, exploration_share, recommend
from serving.schemas import (
    FeedbackEvent,
    FeedbackReceipt,
    FeedbackRequest,
    Recommendation,
    Recommendations,
    RecommendBatchRequest,
    RecommendRequest,
    ReloadReceipt,
    ReloadRequest,
    RequestContext,
    SearchHit,
    SearchRequest,
    SearchResults,
    SimilarItem,
    SimilarItems,
    SimilarItemsRequest,
)
from serving.search import NoTexts, SearchCache, user_preference

log = logging.getLogger(__name__)
# The service's own INFO lines (which version serves, swaps, warm-ups) reach the service log beside
# BentoML's; the root logger BentoML sets up passes WARNING and above only.
logging.getLogger("serving").setLevel(logging.INFO)


@bentoml.service(name="longview", traffic={"timeout": 30})
class Recommender:
    def __init__(self) -> None:
        self.settings = get_settings()
        import torch

        torch.set_num_threads(self.settings.serving.torch_threads)
        self.key = pseudonym_key(self.settings)  # callers send their own ids; features are keyed by pseudonym
        self.features: OnlineFeatureReader | None = None
        self.features_problem: str | None = None
        self._connect_features()
        # prometheus_client, imported here: BentoML sets up its multiprocess directory before __init__
        from prometheus_client import Counter

        self.fallbacks = Counter("longview_fallbacks", "answers that fell back, by reason", ["reason"])
        self.degradations = Counter("longview_degraded", "answers given while degraded, by what was unreachable",
                                    ["unreachable"])
        self.feedback_sink = FeedbackSink(self.settings, self.key)
        log_settings = self.settings.served_log
        # Every answered list, as served, for off-policy estimates (group-committed off the request path).
        self.served_log = ServedLog(self.settings.served_log_dir, log_settings.commit_ms, log_settings.file_bytes,
                                    log_settings.rotate_seconds, log_settings.max_bytes) if log_settings.enabled else None
        # The text model and item vectors load on the first search: /recommend never pays for them.
        self.searches = SearchCache(self.settings)
        self.champion = ChampionFollower(self.settings)
        self.champion.start()
        if self.champion.current is None:
            log.warning("not ready: %s", self.champion.problem)

    @bentoml.on_shutdown
    def _close_served_log(self) -> None:
        if self.served_log is not None:
            self.served_log.close()

    def _connect_features(self) -> None:
        try:
            self.features = OnlineFeatureReader(feature_store(self.settings))
            self.features_problem = None
        except Exception as exc:  # not built yet, or its registry unreachable: not ready, and why
            self.features_problem = f"the online feature store is not available: {exc}"
            log.warning("not ready: %s", self.features_problem)

    def __is_ready__(self) -> bool:
        if self.features is None:
            self._connect_features()
        return self.champion.current is not None and self.features is not None

    @bentoml.api(input_spec=RecommendRequest, output_spec=Recommendation)
    async def recommend(self, user_id: str, k: int = 10, exclude_seen: bool | None = None,
                        context: RequestContext | None = None) -> Recommendation | JSONResponse:
        """Top-k items for a user: each with its score, why it is there and the propensity to log
        with the impression; the version, policy and data that ranked them."""
        answers = self._answer([user_id], k, exclude_seen, context)
        return answers if isinstance(answers, JSONResponse) else answers[0]

    @bentoml.api(input_spec=RecommendBatchRequest, output_spec=Recommendations)
    def recommend_batch(self, user_ids: list[str], k: int = 10, exclude_seen: bool | None = None,
                        context: RequestContext | None = None) -> Recommendations | JSONResponse:
        """Many users at once, for offline use: each answer is the one the user gets alone."""
        answers = self._answer(user_ids, k, exclude_seen, context)
        return answers if isinstance(answers, JSONResponse) else Recommendations(recommendations=answers)

    @bentoml.api(input_spec=RecommendRequest)
    async def constant_list(self, user_id: str, k: int = 10, exclude_seen: bool | None = None,
                            context: RequestContext | None = None) -> dict:
        """The HTTP floor: the same request body as /recommend, answered with a constant list and
        no work (what `longview bench serving` compares /recommend with)."""
        return _CONSTANT

    @bentoml.api(input_spec=SimilarItemsRequest, output_spec=SimilarItems)
    def similar_items(self, item_id: str, k: int = 10) -> SimilarItems | JSONResponse:
        """The k items most like one item, by the served model's item representations (learned
        item embeddings and content for the sequence model; co-engagement for item-kNN and EASE)."""
        served = self.champion.current
        if served is None:
            return JSONResponse({"error": f"not ready: {self.champion.problem}"}, status_code=503)
        if not hasattr(served.model, "similar"):
            return JSONResponse({"error": f"version {served.version} was registered before models could compare "
                                          f"items"}, status_code=409)
        try:
            found, basis = served.model.similar(item_id, k)
        except KeyError:
            return JSONResponse({"error": f"item {item_id!r} is not in the served model's catalogue"}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return SimilarItems(item_id=item_id, items=[SimilarItem(item_id=i, score=round(v, 6)) for i, v in found],
                            by=basis, model_name=served.model_name, model_version=served.version)

    @bentoml.api(input_spec=SearchRequest, output_spec=SearchResults)
    def search(self, query: str, user_id: str | None = None, k: int = 10) -> SearchResults | JSONResponse:
        """Items whose text matches free text ("light comedy about space"), embedded by the model
        that embedded the catalogue; with a user_id, blended with the served model's scores for that
        user (one it knows nothing of gets the text match alone: ``personalised`` says which)."""
        try:
            catalogue = self.searches.get()  # rebuilt when `longview features` rewrites the text table
        except NoTexts:
            return JSONResponse({"error": "the catalogue has no texts to search"}, status_code=409)
        except FileNotFoundError:
            return JSONResponse({"error": "not ready: no feature tables yet: run `longview features`"},
                                status_code=503)
        served, preference, degraded = self.champion.current, None, False
        if user_id is not None and served is not None and hasattr(served.model, "user_scores"):
            if self.features is None:
                self._connect_features()
            try:
                if self.features is None:
                    raise RuntimeError(self.features_problem)
                features = self.features.read([pseudonym(self.key, user_id)])
            except Exception as exc:  # the plain text match, flagged; never the user id in the log
                log.error("online features unavailable, searching without the user's preferences: %s", exc)
                self.degradations.labels(unreachable="online_store").inc()
                degraded = True
            else:
                row = {name: values[0] for name, values in features.items()}
                preference = user_preference(catalogue, served.model, row, time.time())
            if preference is not None and self.champion.registry_problem is not None:
                self.degradations.labels(unreachable="registry").inc()
                degraded = True
        try:
            hits = catalogue.search(query, k, preference)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        personal = preference is not None
        return SearchResults(items=[SearchHit(item_id=h.item_id, score=round(h.score, 6),
                                              text_score=round(h.text_score, 6)) for h in hits],
                             personalised=personal, model_name=served.model_name if personal else None,
                             model_version=served.version if personal else None, degraded=degraded)

    @bentoml.api(route="/admin/reload", input_spec=ReloadRequest, output_spec=ReloadReceipt)
    def reload(self, force: bool = False) -> ReloadReceipt | JSONResponse:
        """Ask the registry now rather than at the next poll (and with ``force``, load the champion
        again). Always behind the API key: with none configured, refused."""
        if self.settings.serving.api_key is None:
            return JSONResponse({"error": "the admin endpoint needs an API key: set LONGVIEW_SERVING__API_KEY"},
                                status_code=403)
        previous = self.champion.current
        self.champion.check(force)
        current = self.champion.current
        return ReloadReceipt(model_version=current.version if current else None,
                             previous_version=previous.version if previous else None,
                             problem=self.champion.problem or self.champion.registry_problem)

    @bentoml.api(input_spec=FeedbackRequest, output_spec=FeedbackReceipt)
    def feedback(self, events: list[FeedbackEvent]) -> FeedbackReceipt | JSONResponse:
        """Impressions (with the propensity /recommend gave), clicks, views with dwell and ratings.
        Acknowledged once on disk in the outbox (ids pseudonymised), which the next ingestion
        validates; the users' online rows are recomputed now, so their next /recommend sees it."""
        try:
            receipt = self.feedback_sink.record(events, self.features.store if self.features else None)
        except FutureEvent as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if not receipt.reflected:
            self.degradations.labels(unreachable="online_store").inc()
        return receipt

    def _answer(self, user_ids: list[str], k: int, exclude_seen: bool | None,
                context: RequestContext | None) -> list[Recommendation] | JSONResponse:
        served = self.champion.current  # one snapshot for the whole request
        if served is None or (self.features is None and not self.__is_ready__()):
            return JSONResponse({"error": f"not ready: {self.champion.problem or self.features_problem}"},
                                status_code=503)
        now = context.time.timestamp() if context is not None and context.time is not None else time.time()
        registry_down = self.champion.registry_problem is not None
        keys = [pseudonym(self.key, user_id) for user_id in user_ids]
        seeds = [exploration_seed(self.settings.seed, key, now) for key in keys]
        try:
            features = self.features.read(keys)
        except Exception as exc:  # the store is down: the model's cold-start lists, flagged
            log.error("online features unavailable: %s", exc)
            self.degradations.labels(unreachable="online_store").inc(len(keys))
            answers = recommend(served, user_ids, [{}] * len(keys), seeds, k, now=now, exclude_seen=exclude_seen,
                                why=STORE_DOWN, degraded=True)
        else:
            rows = [{name: values[i] for name, values in features.items()} for i in range(len(keys))]
            answers = recommend(served, user_ids, rows, seeds, k, now=now, exclude_seen=exclude_seen,
                                degraded=registry_down)
        if registry_down:
            self.degradations.labels(unreachable="registry").inc(len(keys))
        for answer in answers:
            if answer.fallback:
                self.fallbacks.labels(reason=FALLBACK_LABELS[answer.fallback]).inc()
        if self.served_log is not None:
            exploration = exploration_share(served)
            for key, answer in zip(keys, answers, strict=True):
                self.served_log.append(record_of(answer.request_id, key, now, answer.policy, answer.model_name,
                                                 answer.model_version, exploration, answer.fallback, answer.items))
        return answers


_CONSTANT = {"items": [{"item_id": f"i{n}", "score": 1.0 - n / 10} for n in range(10)]}
_serving = get_settings().serving
# The first added is the outermost: the key is checked before a byte of the body is read.
Recommender.add_asgi_middleware(ApiKey, key=_serving.api_key.get_secret_value() if _serving.api_key else None)
Recommender.add_asgi_middleware(BodyLimit, max_bytes=_serving.max_body_bytes)
