"""Item content as model input, read from Feast (the one source of features): genres from the
content profile and the MiniLM text embedding where the data has item text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from longview.feature_store import content_features, feature_store
from longview.settings import Settings


@dataclass
class ItemContent:
    genres: np.ndarray | None  # (n_items + 1) x genres, row 0 zeros; None without genres
    vectors: np.ndarray | None  # genres and text embedding side by side: what the model fuses


def content_matrix(frame: pd.DataFrame, item_ids: list[str]) -> ItemContent:
    """Rows of Feast's content service (item_id, genres, text_embedding?) as index-aligned matrices."""
    rows = frame.drop_duplicates("item_id", keep="last").set_index("item_id").reindex(item_ids)
    genre_lists = rows["genres"].fillna("").astype(str).str.split("|") if "genres" in rows else pd.Series(dtype=object)
    vocabulary = sorted({g for gs in genre_lists for g in gs if g})
    genres = None
    if vocabulary:
        position = {g: i for i, g in enumerate(vocabulary)}
        genres = np.zeros((len(item_ids) + 1, len(vocabulary)), dtype=np.float32)
        for row, gs in enumerate(genre_lists, start=1):
            for g in gs:
                if g in position:
                    genres[row, position[g]] = 1.0
    parts = [] if genres is None else [genres]
    if "text_embedding" in rows:
        texts = rows["text_embedding"]
        width = next((len(v) for v in texts if isinstance(v, (list, np.ndarray)) and len(v)), 0)
        if width:
            text = np.zeros((len(item_ids) + 1, width), dtype=np.float32)
            for row, v in enumerate(texts, start=1):
                if isinstance(v, (list, np.ndarray)) and len(v) == width:
                    v = np.asarray(v, dtype=np.float32)
                    text[row] = np.where(np.isfinite(v), v, 0.0)  # a broken value must not poison the model
            parts.append(text)
    return ItemContent(genres, np.concatenate(parts, axis=1) if parts else None)


def item_content(settings: Settings, item_ids: list[str], as_of: pd.Timestamp) -> ItemContent:
    """The content of ``item_ids`` as known at ``as_of``, from Feast's offline store."""
    frame = content_features(feature_store(settings), item_ids, as_of)
    return content_matrix(frame, item_ids)
