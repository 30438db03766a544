"""Instacart Market Basket (the ``instacart-sample/orders.csv`` layout): one row per product in an order.

Ids: user ``u{user_id}``, product ``p{product_id}``, session ``o{order_id}`` (each order is a session).
Events are ``purchase``s without value, with the id ``o{order_id}-p{product_id}`` (the line's key: a
product bought again in a later order of the same hour is another event, a line sent twice is not). Instacart gives no dates, only each order's hour of day and the
days since the user's previous order (empty on the first, capped at 30), so times are rebuilt on a day
axis: order k of a user is at ORIGIN + (sum of days_since_prior_order up to k) days + hour of day,
plus ``add_to_cart_order`` seconds to keep the basket in order. ``order_dow`` and ``reordered`` are
not used (nor checked). A line whose order-level fields (user, number, hour, days since the prior
order) disagree with its order's first good line is a row problem. The catalogue and users are
derived from the order lines (the dataset has no such files)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from longview.datasets.fields import Problems, unsigned_ids, whole_numbers
from longview.datasets.source import read_records
from longview.datasets.tables import derived_items, derived_users, event_frame

FILES = ["orders.csv"]
ORIGIN = datetime(2017, 1, 1, tzinfo=timezone.utc)
REQUIRED = ["order_id", "user_id", "order_number", "order_hour_of_day", "days_since_prior_order", "product_id",
            "add_to_cart_order"]
ORDER_LEVEL = ["user_id", "order_number", "order_hour_of_day", "days_since_prior_order"]
MAX_GAP_DAYS = 30  # Instacart caps the days since the prior order at 30
NOTES = {"items": "items: derived from the order lines (the dataset has no catalogue file)",
         "users": "users: derived from the order lines (the dataset has no users file)"}


def read_orders(path: Path) -> tuple[pd.DataFrame, Problems, np.ndarray, str]:
    """The order lines, checked: ids as prefixed text, the numbers as floats (NaN where a line's
    value is bad or, for days_since_prior_order, absent on a first order), each line's problems,
    its line numbers and the file name."""
    records = read_records(path, "events", REQUIRED, ",", header=True, quoted=True)
    f, problems = records.fields, Problems(records)
    out = pd.DataFrame({"order_id": unsigned_ids(f["order_id"], "order_id", problems, "o"),
                        "user_id": unsigned_ids(f["user_id"], "user_id", problems, "u"),
                        "product_id": unsigned_ids(f["product_id"], "product_id", problems, "p")})
    out["order_number"] = whole_numbers(f["order_number"], "order_number", 1, 10_000, problems)
    out["order_hour_of_day"] = whole_numbers(f["order_hour_of_day"], "order_hour_of_day", 0, 23, problems)
    out["add_to_cart_order"] = whole_numbers(f["add_to_cart_order"], "add_to_cart_order", 1, 3_599, problems)
    days = f["days_since_prior_order"]
    first = out["order_number"] == 1
    whole = days.str.fullmatch(r"\d{1,2}(\.0*)?").eq(True)
    out["days_since_prior_order"] = pd.to_numeric(days.where(whole), errors="coerce")
    known = out["order_number"].notna()
    problems.add(known & first & days.notna(), "days_since_prior_order given on a first order")
    problems.add(known & ~first & days.isna(), "days_since_prior_order is missing")
    problems.add(days.notna() & ~(whole & out["days_since_prior_order"].between(0, MAX_GAP_DAYS)),
                 f"days_since_prior_order is not a whole number from 0 to {MAX_GAP_DAYS}")
    # Order-level fields must agree across an order's lines.
    good = pd.Series(problems.clean, index=out.index)
    reference = out[good].groupby("order_id")[ORDER_LEVEL].first()
    expected = reference.reindex(out["order_id"]).set_axis(out.index)
    differs = ~((out[ORDER_LEVEL] == expected) | (out[ORDER_LEVEL].isna() & expected.isna())).all(axis=1)
    problems.add(good & differs & out["order_id"].isin(reference.index), "disagrees with the other lines of its order")
    return out, problems, records.line, records.file


def order_gaps(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per order (from good lines): user, order, its number, the real days since the user's
    previous order (NaN on the first), and the rebuilt day of the order on the axis (cumulative days)."""
    per_order = (lines.drop_duplicates("order_id")
                 .sort_values(["user_id", "order_number"], kind="stable")
                 [["user_id", "order_id", "order_number", "order_hour_of_day", "days_since_prior_order"]]
                 .reset_index(drop=True))
    per_order["day"] = per_order["days_since_prior_order"].fillna(0).groupby(per_order["user_id"]).cumsum()
    return per_order


def return_gaps(folder: Path) -> pd.DataFrame:
    """Per order, the user's real return gap: user_id ("u1"), session_id ("o2539329"), order_number,
    days_since_prior_order (float days, NaN on a first order, capped at 30 by Instacart)."""
    lines, problems, _, _ = read_orders(folder / "orders.csv")
    gaps = order_gaps(lines[problems.clean])
    return pd.DataFrame({"user_id": gaps["user_id"], "session_id": gaps["order_id"],
                         "order_number": gaps["order_number"].astype("int64"),
                         "days_since_prior_order": gaps["days_since_prior_order"]})


def load(folder: Path, session_gap_minutes: float = 30.0):
    lines, problems, line_numbers, file = read_orders(folder / "orders.csv")
    clean = problems.clean
    gaps = order_gaps(lines[clean]).set_index("order_id")
    start = (gaps["day"] * 86_400 + gaps["order_hour_of_day"] * 3_600).round()
    epoch = (int(ORIGIN.timestamp()) + lines["order_id"].map(start) + lines["add_to_cart_order"]).where(clean)
    events = event_frame(lines["user_id"], lines["product_id"], epoch.fillna(-1).astype("int64"), "purchase",
                         file=file, source_line=line_numbers, problem=problems.text,
                         session_id=lines["order_id"].where(clean, None),
                         key=(lines["order_id"] + "-" + lines["product_id"]).where(clean, None))
    return events, derived_items(events, "product"), derived_users(events), None, dict(NOTES)

