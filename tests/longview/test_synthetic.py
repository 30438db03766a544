import pandas as pd

from longview.datasets import synthetic


def test_same_seed_same_world_other_seed_other_world():
    a = synthetic.generate(n_users=20, n_items=30, n_days=10, seed=1)
    b = synthetic.generate(n_users=20, n_items=30, n_days=10, seed=1)
    c = synthetic.generate(n_users=20, n_items=30, n_days=10, seed=2)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert not a.events.equals(c.events)


def test_world_has_every_event_type_returns_and_a_catalogue():
    world = synthetic.generate(n_users=40, n_items=50, n_days=20, seed=3)
    assert set(world.events["event_type"]) == {"impression", "click", "view", "rating", "purchase"}
    assert world.events["event_id"].is_unique
    assert set(world.events["item_id"]) <= set(world.items["item_id"])
    views = world.events[world.events["event_type"] == "view"]
    assert (views["value"] >= 0).all()
    ratings = world.events[world.events["event_type"] == "rating"]["value"]
    assert ratings.between(1, 5).all()
    days_per_user = world.events.groupby("user_id")["timestamp"].agg(lambda t: t.dt.floor("D").nunique())
    assert (days_per_user > 1).mean() > 0.5, "most users should come back on another day"
    assert world.items["title"].str.len().gt(0).all()


def test_written_batches_are_chronological_and_complete(tmp_path):
    world = synthetic.generate(n_users=20, n_items=30, n_days=10, seed=4)
    paths = synthetic.write(world, tmp_path, batches=3)
    frames = [pd.read_csv(p) for p in paths]
    assert sum(len(f) for f in frames) == len(world.events)
    assert frames[0]["timestamp"].max() <= frames[1]["timestamp"].min()
    assert (tmp_path / "items.csv").exists()
