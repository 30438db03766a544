"""Feature views: the user profile (after each engagement) and the content profile (daily)."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Array, Float32, Int64, String

from data_sources import item_profile_source, user_profile_source
from entities import item, user

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
        Field(name="active_days", dtype=Int64, description="distinct days with an engagement so far"),
        Field(name="mean_dwell", dtype=Float32, description="mean view dwell so far, seconds"),
        Field(name="taste", dtype=Array(Float32), description="share of each genre among engagements so far"),
    ],
    source=user_profile_source,
    online=True,
)

item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=timedelta(days=365),
    schema=[
        Field(name="popularity_7d", dtype=Int64, description="engagements in the last 7 days"),
        Field(name="popularity_30d", dtype=Int64, description="engagements in the last 30 days"),
        Field(name="age_days", dtype=Float32, description="days since release"),
    ],
    source=item_profile_source,
    online=True,
)
