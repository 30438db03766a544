"""Offline sources: the parquet tables `longview features` writes into the data home, and the push
source through which fresh user profiles reach the online store between materialisations."""

from feast import FileSource, PushSource

from longview.settings import get_settings

_features = get_settings().features_dir


def _parquet(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(_features / f"{name}.parquet"),
        timestamp_field="event_timestamp",
        # When the row was known (on the dataset clock): the training-set join filters on it.
        created_timestamp_column="created_timestamp",
    )


user_profile_source = _parquet("user_profile")
user_history_source = _parquet("user_history")
item_profile_source = _parquet("item_profile")
item_text_source = _parquet("item_text")

user_profile_push = PushSource(name="user_profile_push", batch_source=user_profile_source)
user_history_push = PushSource(name="user_history_push", batch_source=user_history_source)
