"""Feature views: the user profile (after each engagement), the content profile (daily) and the
items' text embeddings (from a pretrained sentence-transformers model)."""

from datetime import timedelta

from data_sources import item_profile_source, item_text_source, user_history_push, user_profile_push
from entities import item, user
from feast import FeatureView, Field
from feast.types import Array, Float32, Float64, Int64, String

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[
        Field(name="recent_items", dtype=Array(String), description="last items engaged with, oldest first"),
        Field(name="events_1d", dtype=Int64, description="engagements in the last day"),
        Field(name="events_7d", dtype=Int64, description="engagements in the last 7 days"),
        Field(name="events_30d", dtype=Int64, description="engagements in the last 30 days"),
        Field(name="days_since_prev", dtype=Float32, description="gap to the previous engagement, days"),
        Field(name="last_event_epoch", dtype=Float64,
              description="time of the last engagement (Unix seconds): days since it = now - this"),
        Field(name="active_days", dtype=Int64, description="distinct days with an engagement so far"),
        Field(name="last_return_gap", dtype=Float32, description="days between the last two sessions"),
        Field(name="mean_return_gap", dtype=Float32, description="mean days between sessions so far"),
        Field(name="mean_session_depth", dtype=Float32, description="mean engagements per session so far"),
        Field(name="mean_dwell", dtype=Float32, description="mean view dwell so far, seconds"),
        Field(name="taste", dtype=Array(Float32), description="share of each genre among engagements so far"),
    ],
    # Batch rows come from the push source's parquet; fresh rows are pushed online between runs.
    source=user_profile_push,
    online=True,
)

user_history = FeatureView(
    name="user_history",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[
        Field(name="history", dtype=Array(String),
              description="every item engaged with, oldest first: the served model's input and what it will not "
                          "recommend again (latest state only: not for point-in-time joins)"),
    ],
    source=user_history_push,
    online=True,
)

item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=timedelta(days=365),
    schema=[
        Field(name="popularity_1d", dtype=Int64, description="engagements in the last day"),
        Field(name="popularity_7d", dtype=Int64, description="engagements in the last 7 days"),
        Field(name="popularity_30d", dtype=Int64, description="engagements in the last 30 days"),
        Field(name="age_days", dtype=Float32, description="days since release (-1: unknown)"),
        Field(name="genres", dtype=String, description="|-separated genres or categories"),
    ],
    source=item_profile_source,
    online=True,
)

item_text = FeatureView(
    name="item_text",
    entities=[item],
    ttl=timedelta(0),  # a description does not expire
    schema=[
        Field(name="text_embedding", dtype=Array(Float32),
              description="all-MiniLM-L6-v2 embedding (384, unit length) of title, genres, tags, description"),
    ],
    source=item_text_source,
    online=True,
)
