"""The gate's off-policy report, a report and not a rule (until estimates on these logs are shown to
be reliable): from Longview's own served log, the challenger's top-slot click rate estimated from the
slates the champion served, with IPS, SNIPS and DR and 95% bootstrap intervals (training/off_policy.py),
beside the champion's own rate on those slates.

* A logged slate earned a click where a positive engagement (a `/feedback` event) names its request
  id and its top item. Client-sent impressions play no part: the propensities are the service's own.
* The top slot's logged propensity is its marginal one (no slots above it).
* The challenger's top item for each logged request is what it would serve, as it would be served
  with its exploration off (a deterministic target), given what the service read for that user:
  their engagement history before the request.
* Return rates are not estimated: a served log spans days, a return needs weeks of it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from longview.settings import Settings

MIN_SLATES = 30  # fewer logged slates give no estimate worth reading
BATCH = 256


def served_report(settings: Settings, challenger, challenger_tags: dict, champion_version: str) -> dict:
    """The report for a loaded challenger (PackagedModel) against what ``champion_version`` served."""
    from longview.store import load_events, load_served
    from training.off_policy import top_slot_estimates
    from training.sequences import positive_engagement
    from training.served_policy import as_served

    served = load_served(settings, columns=["request_id", "user_id", "timestamp", "model_version", "position",
                                            "item_id", "propensity"])
    top = served[(served["position"] == 0) & (served["model_version"].astype(str) == str(champion_version))]
    report: dict = {"champion": str(champion_version), "slates": int(len(top))}
    if len(top) < MIN_SLATES:
        report["note"] = (f"{len(top)} slates served by version {champion_version} in the served log, fewer than "
                          f"{MIN_SLATES}: no estimate")
        return report
    events = load_events(settings, columns=["event_id", "user_id", "item_id", "timestamp", "event_type", "value",
                                            "session_id", "request_id"])
    hits = events[positive_engagement(events, settings) & events["request_id"].notna()]
    clicked = set(zip(hits["request_id"].astype(str), hits["item_id"].astype(str), strict=True))
    reward = np.array([(r, i) in clicked for r, i in zip(top["request_id"].astype(str), top["item_id"].astype(str),
                                                         strict=True)], dtype=float)

    greedy = settings.model_copy(update={"engagement": settings.engagement.model_copy(update={"exploration": 0.0})})
    target = as_served(greedy, challenger, challenger_tags)
    histories, nows, lasts = _requests(settings, events, top)
    chosen: list[str] = []
    for start in range(0, len(top), BATCH):
        part = slice(start, start + BATCH)
        for row in target.slots(histories[part], nows[part], 1, lasts[part]):
            chosen.append(row[0].item if row else "")
    items = {item: i for i, item in enumerate(sorted(set(top["item_id"].astype(str)) | set(chosen)))}
    logged = np.array([items[i] for i in top["item_id"].astype(str)])
    picks = np.array([items[i] for i in chosen])
    found = top_slot_estimates(logged, picks, top["propensity"].to_numpy(float), reward, len(items), settings.seed)
    report.update(champion_rate=round(float(reward.mean()), 6), clicks=int(reward.sum()),
                  matches=int((logged == picks).sum()), **{name: value.as_dict() for name, value in found.items()})
    return report


def _requests(settings: Settings, events: pd.DataFrame, top: pd.DataFrame) -> tuple[list, list, list]:
    """Per logged slate, what the service read for the user: their engagement history before the
    request (longview/feature_tables.py: ``engagements`` in ``tie_ordered`` order, the user_history
    view's rule), the request's time and their last engagement's (Unix seconds; None: none)."""
    from longview.feature_tables import engagements, tie_ordered

    eng = tie_ordered(engagements(events), settings.seed)
    frame = pd.DataFrame({"user": eng["user_id"].astype(str), "item": eng["item_id"].astype(str),
                          "t": pd.to_datetime(eng["timestamp"], utc=True).astype("int64") / 1e9})
    by_user = {user: group for user, group in frame.groupby("user", sort=False)}
    when = pd.to_datetime(top["timestamp"], utc=True).astype("int64") / 1e9
    histories, nows, lasts = [], [], []
    for user, now in zip(top["user_id"].astype(str), when, strict=True):
        mine = by_user.get(user)
        before = mine[mine["t"] < now] if mine is not None else None
        histories.append([] if before is None else before["item"].tolist())
        nows.append(float(now))
        lasts.append(None if before is None or before.empty else float(before["t"].iloc[-1]))
    return histories, nows, lasts
