"""The online reader the service depends on (longview/online_features.py), on the real Feast repo:
bad requests and a registry that changes under it get clear answers. Its parity with the Feast SDK
is tested beside the offline store, in test_feature_store.py."""

from __future__ import annotations

import pytest

from longview.feature_store import feature_store
from longview.features import FEATURE_SERVICE, USER_VIEW
from longview.online_features import FeatureStoreError, OnlineFeatureReader, online_user_features


def test_bad_requests_get_clear_answers(featured_any):
    settings, _ = featured_any
    store = feature_store(settings)
    reader = OnlineFeatureReader(store)
    assert online_user_features(store, []) == {}
    empty = reader.read([])
    assert empty["user_id"] == [] and empty["recent_items"] == []
    unknown = reader.read(["no-such-user", "'; DROP TABLE x;--"])
    assert unknown["recent_items"] == [None, None] and unknown["events_7d"] == [None, None]
    with pytest.raises(FeatureStoreError, match="'nope' is not in the registry"):
        OnlineFeatureReader(store, "nope")
    # The registry changes under a running reader (`feast apply` removed the view): once the reader
    # re-reads the registry (here on every call), a clear error.
    reader = OnlineFeatureReader(store, refresh_seconds=0)
    gone = [store.get_feature_service(FEATURE_SERVICE), store.get_feature_service("recommender_v1"),
            store.get_feature_view(USER_VIEW)]
    store.apply([], objects_to_delete=gone, partial=False)
    with pytest.raises(FeatureStoreError, match="run `longview features`"):
        reader.read(["no-such-user"])
