"""A deterministic synthetic world for the demo and the tests.

Users have latent genre tastes; items belong to genres and to short series (so what comes next
depends on what came before); users come back more often when what they consumed matched their
taste, and churn when it did not. Every event type of the canonical schema appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from longview.datasets.tables import EVENT_COLUMNS, as_text

GENRES = ["action", "comedy", "drama", "horror", "romance", "scifi", "documentary", "animation"]
_WORDS = {
    "action": ["Fury", "Strike", "Chase", "Blade", "Siege"],
    "comedy": ["Laughs", "Mixup", "Party", "Blunder", "Prank"],
    "drama": ["Silence", "Letters", "Winter", "Promise", "Harbour"],
    "horror": ["Shadows", "Haunting", "Crypt", "Night", "Scream"],
    "romance": ["Hearts", "Kiss", "Summer", "Wedding", "Serenade"],
    "scifi": ["Orbit", "Android", "Nebula", "Warp", "Colony"],
    "documentary": ["Planet", "Oceans", "Histories", "Makers", "Wild"],
    "animation": ["Toys", "Dragon", "Bunny", "Pixel", "Cloud"],
}
ORIGIN = datetime(2024, 3, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class WorldSize:
    """How big a world to generate, and from which seed (the settings' synthetic_* and seed)."""

    users: int = 300
    items: int = 240
    days: int = 60
    seed: int = 7


@dataclass(frozen=True)
class SyntheticWorld:
    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame


def _catalogue(rng: np.random.Generator, n_items: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    genre_matrix = np.zeros((n_items, len(GENRES)), dtype=np.float32)
    series = np.zeros(n_items, dtype=int)
    rows = []
    i, s = 0, 0
    while i < n_items:
        size = int(min(rng.integers(2, 5), n_items - i))
        main = int(rng.integers(len(GENRES)))
        extra = int(rng.integers(len(GENRES))) if rng.random() < 0.4 else main
        name = f"{rng.choice(_WORDS[GENRES[main]])} of the {rng.choice(_WORDS[GENRES[extra]])}"
        for part in range(size):
            genre_matrix[i, main] = 1.0
            genre_matrix[i, extra] = 1.0
            series[i] = s
            genres = sorted({GENRES[main], GENRES[extra]})
            title = name if part == 0 else f"{name} {part + 1}"
            rows.append({
                "item_id": f"i{i + 1:04d}",
                "title": title,
                "genres": "|".join(genres),
                "text": f"{title}: a {' and '.join(genres)} story, part {part + 1} of {size}.",
                "release_time": ORIGIN - timedelta(days=int(rng.integers(0, 900))),
            })
            i += 1
        s += 1
    return pd.DataFrame(rows), genre_matrix, series


def generate(n_users: int = 300, n_items: int = 240, n_days: int = 60, seed: int = 7) -> SyntheticWorld:
    rng = np.random.default_rng(seed)
    items, genre_matrix, series = _catalogue(rng, n_items)
    item_ids = items["item_id"].to_numpy()
    appeal = rng.normal(0.0, 0.5, n_items)  # some items are simply better: popularity is a real signal
    tastes = rng.dirichlet(np.full(len(GENRES), 0.25), size=n_users)
    affinity = tastes @ genre_matrix.T  # users x items, in [0, 2]

    events: list[tuple] = []
    session_no = 0
    for u in range(n_users):
        user_id = f"u{u + 1:04d}"
        day = float(rng.integers(0, max(1, n_days // 3)))
        satisfaction = 0.5
        last_item = -1
        seen: set[int] = set()
        while day < n_days:
            session_no += 1
            start = ORIGIN + timedelta(days=day, hours=float(rng.uniform(7, 23)))
            t = start
            depth = int(rng.integers(2, 7))
            matches = []
            for _ in range(depth):
                logits = 3.0 * affinity[u] + appeal
                if last_item >= 0:
                    nxt = np.flatnonzero((series == series[last_item]) & (np.arange(n_items) == last_item + 1))
                    logits[nxt] += 3.0  # the next part of a series the user is watching
                if seen:
                    logits[list(seen)] -= 2.0
                p = np.exp(logits - logits.max())
                p /= p.sum()
                chosen = int(rng.choice(n_items, p=p))
                others = rng.choice(n_items, size=3, replace=False)
                for shown in [*others, chosen]:
                    t += timedelta(seconds=float(rng.uniform(1, 5)))
                    events.append((user_id, item_ids[shown], "impression", t, np.nan, session_no))
                match = affinity[u, chosen] / max(affinity[u].max(), 1e-6)
                matches.append(match)
                t += timedelta(seconds=float(rng.uniform(2, 10)))
                events.append((user_id, item_ids[chosen], "click", t, np.nan, session_no))
                dwell = float(rng.gamma(2.0, 300.0 * (0.3 + match)))
                t += timedelta(seconds=dwell)
                events.append((user_id, item_ids[chosen], "view", t, round(dwell, 1), session_no))
                if rng.random() < 0.35:
                    rating = float(np.clip(np.round(1 + 4 * match + rng.normal(0, 0.7)), 1, 5))
                    events.append((user_id, item_ids[chosen], "rating", t + timedelta(seconds=5), rating, session_no))
                if rng.random() < 0.1 * (0.5 + match):
                    events.append((user_id, item_ids[chosen], "purchase", t + timedelta(seconds=9), np.nan, session_no))
                seen.add(chosen)
                last_item = chosen
                t += timedelta(seconds=float(rng.uniform(5, 60)))
            satisfaction = 0.6 * satisfaction + 0.4 * float(np.mean(matches))
            # Long-term engagement: satisfied users return sooner and churn less.
            if rng.random() < 0.04 + 0.12 * (1 - satisfaction):
                break
            day += float(rng.exponential(1.0 + 4.0 * (1 - satisfaction))) + 0.3
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "event_type", "timestamp", "value", "session_id"])
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    frame.insert(0, "event_id", [f"e{n:09d}" for n in range(1, len(frame) + 1)])
    frame["session_id"] = "s" + frame["session_id"].astype(str).str.zfill(7)
    users = pd.DataFrame({
        "user_id": [f"u{u + 1:04d}" for u in range(n_users)],
        "signup_time": [ORIGIN - timedelta(days=int(d)) for d in rng.integers(0, 365, n_users)],
    })
    return SyntheticWorld(items=items, users=users, events=frame[EVENT_COLUMNS])


def write(world: SyntheticWorld, out_dir: Path, batches: int = 2) -> list[Path]:
    """Write the catalogue and the events as ``batches`` chronological CSV files (as a feed would).

    Users carry no attributes the loop uses yet, so the users table stays in memory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    world.items.to_csv(out_dir / "items.csv", index=False)
    paths = []
    bounds = np.linspace(0, len(world.events), batches + 1).astype(int)
    for n, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
        path = out_dir / f"events-{n:03d}.csv"
        out = world.events.iloc[start:stop].copy()
        out["timestamp"] = out["timestamp"].map(lambda ts: ts.isoformat())
        out.to_csv(path, index=False)
        paths.append(path)
    return paths


def load(size: WorldSize) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, None, dict[str, str]]:
    """The world as a dataset loader returns one: events, items and users as text frames, no tags."""
    world = generate(size.users, size.items, size.days, size.seed)
    return as_text(world.events), as_text(world.items), as_text(world.users), None, {}
