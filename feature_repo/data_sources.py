"""Offline sources: the parquet tables `longview features` writes into the data home, and the push
source through which fresh user profiles reach the online store between materialisations.

The repo reads where those tables are from the environment (LONGVIEW_FEATURES_DIR, which
longview/feature_store.py sets when it loads these files and passes to the feast CLI), not by
importing the platform: the platform loads the repo, so the repo must not load the platform."""

import os
from pathlib import Path

from feast import FileSource, PushSource


def features_dir() -> Path:
    named = os.environ.get("LONGVIEW_FEATURES_DIR")
    if named:
        return Path(named)
    return Path(os.environ.get("LONGVIEW_HOME", ".longview")).expanduser().resolve() / "features"


def _parquet(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(features_dir() / f"{name}.parquet"),
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
