"""What the service accepts and answers. Requests are strict (``"k": "5"`` is a 400, not 5) and
closed (an unknown field is a 400, not ignored); BentoML is given each request model whole
(``input_spec``), so the body's own top-level fields are the API's arguments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from longview.ids import ID_REGEX, MAX_ID_LENGTH, REQUEST_ID_REGEX
from longview.settings import get_settings

# Read when the service starts: the bounds its OpenAPI page shows.
MAX_K, MAX_BATCH = get_settings().serving.max_k, get_settings().serving.max_batch

UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_REGEX,
                              description=f"the user's id (1-{MAX_ID_LENGTH} letters, digits, _.:-)")]
ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_REGEX,
                              description=f"an item's id (1-{MAX_ID_LENGTH} letters, digits, _.:-)")]
# The id of one served list, issued by /recommend and echoed by the /feedback events about it.
RequestId = Annotated[str, Field(pattern=REQUEST_ID_REGEX, description="the request_id /recommend returned")]
TopK = Annotated[int, Field(ge=1, le=MAX_K, description=f"how many items, 1 to {MAX_K}")]

# hide_input_in_errors: BentoML logs a rejected request's validation error at ERROR level, and the
# error would quote the input; the service log is no place for raw user ids.
STRICT = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)


class RequestContext(BaseModel):
    """Where and when the list is shown. Typed and closed: nothing free-form reaches the model."""

    model_config = STRICT

    time: AwareDatetime | None = Field(default=None, description="when the list is shown (default: now)")
    device: Literal["web", "ios", "android", "tv", "other"] | None = None
    surface: Literal["home", "detail", "search", "notification", "other"] | None = None


class RecommendRequest(BaseModel):
    model_config = STRICT

    user_id: UserId
    k: TopK = 10
    exclude_seen: bool | None = Field(default=None, description="leave out items the user engaged with "
                                                                "(default: the model's rule)")
    context: RequestContext | None = None


class RecommendBatchRequest(BaseModel):
    """Many users at once (offline use): each gets the answer it would get alone at the same time."""

    model_config = STRICT

    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} user ids")
    k: TopK = 10
    exclude_seen: bool | None = None
    context: RequestContext | None = None


class _Feedback(BaseModel):
    model_config = STRICT

    user_id: UserId
    item_id: ItemId
    time: AwareDatetime | None = Field(default=None, description="when it happened (default: when received)")
    session_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_REGEX)] | None = None
    request_id: RequestId | None = Field(default=None, description="the list this event is about: the request_id "
                                                                    "/recommend returned with it")


class Impression(_Feedback):
    type: Literal["impression"]
    propensity: float = Field(gt=0, le=1, description="the propensity /recommend gave the slot")


class Click(_Feedback):
    type: Literal["click"]


class View(_Feedback):
    type: Literal["view"]
    dwell_seconds: float = Field(ge=0, le=get_settings().dwell_cap_seconds)


class Rating(_Feedback):
    type: Literal["rating"]
    rating: float = Field(ge=get_settings().rating_min, le=get_settings().rating_max)


FeedbackEvent = Annotated[Impression | Click | View | Rating, Field(discriminator="type")]


class FeedbackRequest(BaseModel):
    """What users did with what they were shown: each event checked by its type's own fields."""

    model_config = STRICT

    events: list[FeedbackEvent] = Field(min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} events")


class FeedbackReceipt(BaseModel):
    accepted: int
    event_ids: list[str] = Field(description="server-assigned, in the order sent")
    reflected: bool = Field(description="the users' online features were updated for their next /recommend")
    note: str | None = None


class ReloadRequest(BaseModel):
    model_config = STRICT

    force: bool = Field(default=False, description="load @champion again even if it has not moved")


class ReloadReceipt(BaseModel):
    model_version: str | None
    previous_version: str | None
    problem: str | None = Field(description="why nothing is served, or why the registry was not reached")


class SimilarItemsRequest(BaseModel):
    model_config = STRICT

    item_id: ItemId
    k: TopK = 10


class SimilarItem(BaseModel):
    item_id: str
    score: float


class SimilarItems(BaseModel):
    item_id: str
    items: list[SimilarItem]
    by: str = Field(description="what the likeness is of: learned item embeddings, content, co-engagement")
    model_name: str
    model_version: str


Reason = Literal["engagement", "exploration", "popular", "model"]


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    # engagement: ranked by the engagement-aware policy; exploration: shown by its exploration
    # share; popular: the user has no history the model knows; model: the registered model's own ranking.
    reason: Reason
    propensity: float = Field(description="the chance this slot showed this item (log it with the impression)")


class Recommendation(BaseModel):
    request_id: str = Field(description="this list's id in the served log: echo it in /feedback events about it")
    user_id: str
    items: list[RecommendedItem]
    policy: str = Field(description="what ranked the list: 'engagement' or the registered model's name")
    model_name: str
    model_version: str
    feature_service: str
    data_version: str
    fallback: str | None = Field(description="null, or why the list is a fallback")
    degraded: bool = Field(description="an online store or the registry could not be reached")


class Recommendations(BaseModel):
    recommendations: list[Recommendation]


# A search query: up to MAX_QUERY_CHARS characters, at least one of them not whitespace (the
# pattern's class is what Python's str.strip() keeps: Rust's \s leaves out \x1c-\x1f).
MAX_QUERY_CHARS = 500
SearchQuery = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"[^\s\x1c-\x1f]",
                                   description=f"free text, 1-{MAX_QUERY_CHARS} characters, not only whitespace")]


class SearchRequest(BaseModel):
    """Free text, matched against the items' texts; with a user_id, blended with that user's taste."""

    model_config = STRICT

    query: SearchQuery
    user_id: UserId | None = Field(default=None, description="blend in this user's preferences (optional)")
    k: TopK = 10


class SearchHit(BaseModel):
    item_id: str
    score: float = Field(description="what the hits are ordered by: text_score, or its blend with the user's "
                                     "preference when personalised")
    text_score: float = Field(description="the cosine of the query's and the item's text embeddings")


class SearchResults(BaseModel):
    items: list[SearchHit]
    personalised: bool = Field(description="the user's preferences were blended in (false without a user_id, "
                                           "for a user the model knows nothing of, or when degraded)")
    model_name: str | None = Field(default=None, description="the model whose preferences were blended in")
    model_version: str | None = Field(default=None, description="its registered version")
    degraded: bool = Field(default=False, description="the user's features or the registry could not be reached")
