"""Feature services: the exact feature set a model version was trained and is served with."""

from feast import FeatureService

from features import item_profile, user_profile

recommender_v1 = FeatureService(
    name="recommender_v1",
    features=[user_profile],
    description="two-tower sequence recommender: the user profile, including recent items",
)
item_popularity_v1 = FeatureService(name="item_popularity_v1", features=[item_profile])
