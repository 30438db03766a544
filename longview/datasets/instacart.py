"""Instacart Market Basket (the ``instacart-sample/orders.csv`` layout): one row per product in an order.

Ids: user ``u{user_id}``, product ``p{product_id}``, session ``o{order_id}`` (each order is a session).
Events are ``purchase``s without value. Instacart gives no dates, only each order's hour of day and the
days since the user's previous order (empty on the first, capped at 30), so times are rebuilt on a day
axis: order k of a user is at ORIGIN + (sum of days_since_prior_order up to k) days + hour of day,
plus ``add_to_cart_order`` seconds to keep the basket in order. ``order_dow`` is not used.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from longview.datasets.tables import event_frame, item_frame, prefixed, user_frame

FILES = ["orders.csv"]
ORIGIN = datetime(2017, 1, 1, tzinfo=timezone.utc)
INTEGERS = ["order_id", "user_id", "order_number", "order_hour_of_day", "product_id", "add_to_cart_order"]
COLUMNS = INTEGERS + ["order_dow", "days_since_prior_order", "reordered"]


def read_orders(path: Path) -> pd.DataFrame:
    """The order lines with numeric columns (integers written as ``3.0`` accepted; CRLF, BOM safe)."""
    try:
        raw = pd.read_csv(path, encoding="utf-8-sig", usecols=lambda c: str(c).strip() in COLUMNS)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in INTEGERS + ["days_since_prior_order"] if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    for col in raw.columns:
        if not pd.api.types.is_numeric_dtype(raw[col]):
            raise ValueError(f"{path}: column {col} is not numeric")
        if col in INTEGERS:
            if raw[col].isna().any() or (raw[col] % 1 != 0).any():
                raise ValueError(f"{path}: column {col} must hold whole numbers")
            raw[col] = raw[col].astype("int64")
    return raw


def order_gaps(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per order: user, order, its number, the real days since the user's previous order
    (NaN on the first), and the rebuilt day of the order on the axis (cumulative days)."""
    per_order = (orders.drop_duplicates("order_id")
                 .sort_values(["user_id", "order_number"], kind="stable")
                 [["user_id", "order_id", "order_number", "order_hour_of_day", "days_since_prior_order"]]
                 .reset_index(drop=True))
    per_order["day"] = per_order["days_since_prior_order"].fillna(0).groupby(per_order["user_id"]).cumsum()
    return per_order


def return_gaps(folder: Path) -> pd.DataFrame:
    """Per order, the user's real return gap: user_id ("u1"), session_id ("o2539329"), order_number,
    days_since_prior_order (float days, NaN on a first order, capped at 30 by Instacart)."""
    gaps = order_gaps(read_orders(folder / "orders.csv"))
    return pd.DataFrame({"user_id": prefixed("u", gaps["user_id"].to_numpy()),
                         "session_id": prefixed("o", gaps["order_id"].to_numpy()),
                         "order_number": gaps["order_number"],
                         "days_since_prior_order": gaps["days_since_prior_order"]})


def load(folder: Path, session_gap_minutes: float = 30.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    orders = read_orders(folder / "orders.csv")
    gaps = order_gaps(orders).set_index("order_id")
    start = (gaps["day"] * 86_400 + gaps["order_hour_of_day"] * 3_600).round().astype("int64")
    epoch = int(ORIGIN.timestamp()) + orders["order_id"].map(start).to_numpy() + orders["add_to_cart_order"].to_numpy()
    events = event_frame(prefixed("u", orders["user_id"].to_numpy()), prefixed("p", orders["product_id"].to_numpy()),
                         epoch, "purchase", session_id=prefixed("o", orders["order_id"].to_numpy()))
    ids = np.sort(pd.unique(orders["product_id"]))
    catalogue = item_frame([f"p{i}" for i in ids], [f"product {i}" for i in ids])
    return events, catalogue, user_frame(None, events)
