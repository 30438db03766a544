"""Offline sources: the parquet tables `longview features` writes into the data home."""

from feast import FileSource

from longview.settings import get_settings

_features = get_settings().features_dir

user_profile_source = FileSource(
    name="user_profile_source",
    path=str(_features / "user_profile.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)
item_profile_source = FileSource(
    name="item_profile_source",
    path=str(_features / "item_profile.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)
