"""Searching the catalogue by free text: the query is embedded with the same pretrained model as
the items' texts (longview/text_embedding.py) and each item scored by the cosine of the two; with a
user's preferences (the served model's scores for that user) the cosine is blended with them.

The item vectors are the ``item_text`` feature table (longview/features.py), read once into one
float32 matrix; ``SearchCache`` builds it on first use and again when the table is rewritten, so
/recommend never pays for the text model and a `longview features` run reaches /search."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from longview.features import MANIFEST, TEXT_VIEW, read_manifest
from longview.settings import Settings

log = logging.getLogger(__name__)

# The default share of a blended score that is the user's preference (LONGVIEW_SERVING__SEARCH_BLEND).
BLEND_WEIGHT = 0.2
QUERY_CACHE = 1024  # the vectors of the most recent distinct queries: a repeated query is not embedded again

Encoder = Callable[[list[str]], np.ndarray]


class NoTexts(LookupError):
    """The catalogue has no item texts, so there is nothing to search."""


class Hit(NamedTuple):
    item_id: str
    score: float  # what the hits are ordered by: the cosine, or the blend with the user's preference
    text_score: float  # the cosine of the query with the item's text


def _encode(texts: list[str]) -> np.ndarray:
    from longview.text_embedding import encode  # sentence-transformers: imported on the first search only

    return encode(texts)


def clean_query(query: str) -> str:
    """The query as searched (surrounding whitespace stripped); ValueError for an empty one."""
    if not isinstance(query, str):
        raise ValueError(f"the query must be text, got {type(query).__name__}")
    text = query.strip()
    if not text:
        raise ValueError("the query is empty: say what to search for")
    return text


class CatalogueSearch:
    """Item ids and their unit text vectors (one float32 row each), and the query encoder."""

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, encode: Encoder = _encode,
                 blend: float = BLEND_WEIGHT) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ValueError(f"{len(item_ids)} item ids but vectors of shape {vectors.shape}")
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"the blend weight must lie in [0, 1], got {blend}")
        norms = np.linalg.norm(vectors, axis=1)
        usable = np.isfinite(norms) & (norms > 0)  # a zero or broken vector matches nothing: not searchable
        if not usable.any():
            raise NoTexts("the catalogue has no texts to search")
        self.item_ids: list[str] = [item for item, ok in zip(item_ids, usable, strict=True) if ok]
        self.vectors = np.ascontiguousarray(vectors[usable] / norms[usable, None], dtype=np.float32)
        self.row = {item: r for r, item in enumerate(self.item_ids)}
        if len(self.row) != len(self.item_ids):
            raise ValueError("item ids must be unique")
        self.encode, self.blend = encode, float(blend)
        self._query_vector = lru_cache(maxsize=QUERY_CACHE)(self._embed)
        self._aligned: tuple[Sequence[str], int, np.ndarray] | None = None

    @classmethod
    def from_features(cls, features_dir: Path, encode: Encoder = _encode,
                      blend: float = BLEND_WEIGHT) -> "CatalogueSearch":
        """From the ``item_text`` table ``longview features`` wrote. NoTexts: the catalogue had none;
        FileNotFoundError: the feature tables are not built."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = features_dir / f"{TEXT_VIEW}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"no item text table at {path}: run `longview features`")
        if not read_manifest(features_dir).get("text_embedding"):
            raise NoTexts("the catalogue has no texts to search")
        table = pq.read_table(path, columns=["item_id", "text_embedding"])
        table = table.filter(pc.and_(pc.is_valid(table["item_id"]), pc.is_valid(table["text_embedding"])))
        if table.num_rows == 0:
            raise NoTexts("the catalogue has no texts to search")
        embeddings = table["text_embedding"].combine_chunks()
        width = len(embeddings[0])
        if pc.any(pc.not_equal(pc.list_value_length(embeddings), width)).as_py():
            raise ValueError(f"the text embeddings in {path} are not all of one width")
        vectors = embeddings.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)
        ids = table["item_id"].to_pylist()
        # An item listed twice (not expected: the catalogue is keyed by id): its last row wins.
        last = {item: r for r, item in enumerate(ids)}
        rows = sorted(last.values())
        return cls([ids[r] for r in rows], vectors[rows], encode, blend)

    def __len__(self) -> int:
        return len(self.item_ids)

    def preference(self, item_ids: Sequence[str], scores: np.ndarray) -> np.ndarray:
        """A model's scores (one per id of ``item_ids``) laid out in this catalogue's order, NaN for
        items the model does not know. The layout is kept for the last ``item_ids`` list given (a
        served model's, the same list on every request)."""
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if len(scores) != len(item_ids):
            raise ValueError(f"{len(item_ids)} item ids but {len(scores)} scores")
        aligned = self._aligned
        if aligned is None or aligned[0] is not item_ids or aligned[1] != len(item_ids):
            position = {item: p for p, item in enumerate(item_ids)}
            places = np.array([position.get(item, -1) for item in self.item_ids], dtype=np.int64)
            aligned = self._aligned = (item_ids, len(item_ids), places)
        places = aligned[2]
        out = np.full(len(self.item_ids), np.nan, dtype=np.float32)
        known = places >= 0
        out[known] = scores[places[known]]
        return out

    def search(self, query: str, k: int, user_scores: Mapping[str, float] | np.ndarray | None = None,
               exclude: Collection[str] = frozenset()) -> list[Hit]:
        """The ``k`` items (fewer if fewer are searchable) whose text best matches ``query``, best
        first, ties in catalogue order. With ``user_scores`` (a user's preference per item id, or
        ``preference``'s array; higher: preferred), only the items with a finite preference are
        searched and each is scored ``(1 - blend) * cosine + blend * preference``, the preference
        min-max scaled to [0, 1] over the items searched. ``exclude``: item ids left out."""
        text = clean_query(query)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a whole number of at least 1, got {k!r}")
        cosine = self.vectors @ self._query_vector(text)
        score = cosine.copy()
        searched = np.ones(len(self.item_ids), dtype=bool)
        if user_scores is not None:
            preference = (user_scores if isinstance(user_scores, np.ndarray)
                          else self._from_mapping(user_scores))
            if preference.shape != cosine.shape:
                raise ValueError(f"{preference.shape[0]} preferences for a catalogue of {len(cosine)} items")
            searched &= np.isfinite(preference)
            if searched.any():
                score[searched] = ((1.0 - self.blend) * cosine[searched]
                                   + self.blend * _min_max(preference[searched]))
        for item in exclude:
            row = self.row.get(item)
            if row is not None:
                searched[row] = False
        candidates = np.flatnonzero(searched)
        take = min(k, len(candidates))
        if take == 0:
            return []
        values = score[candidates]
        if take < len(candidates):  # no full sort of the catalogue: the best k, then those k in order
            part = np.argpartition(-values, take - 1)[:take]
            # argpartition picks arbitrarily among items tied at the k-th score: widen to all of them
            tied = np.flatnonzero(values >= values[part].min())
            part = tied if len(tied) > take else part
            candidates, values = candidates[part], values[part]
        order = np.lexsort((candidates, -values))[:take]
        return [Hit(self.item_ids[r], float(score[r]), float(cosine[r])) for r in candidates[order]]

    def _embed(self, text: str) -> np.ndarray:
        vector = np.asarray(self.encode([text]), dtype=np.float32).reshape(-1)
        if vector.shape != (self.vectors.shape[1],):
            raise ValueError(f"the encoder gave a vector of {vector.size} numbers, the catalogue's have "
                             f"{self.vectors.shape[1]}")
        vector.flags.writeable = False  # cached and shared between requests
        return vector

    def _from_mapping(self, user_scores: Mapping[str, float]) -> np.ndarray:
        out = np.full(len(self.item_ids), np.nan, dtype=np.float32)
        for item, value in user_scores.items():
            row = self.row.get(item)
            if row is not None:
                out[row] = value
        return out


def user_preference(search: CatalogueSearch, model, row: Mapping, now: float) -> np.ndarray | None:
    """The served model's scores (a PackagedModel's ``user_scores``) for the user of this online
    row, in ``search``'s layout (``search.preference``); None when there is nothing personal to
    blend in: no history, none of it known to the model, or no searchable item known to it."""
    history = row.get("history")
    if history is None or not len(model.encode(history)):
        return None
    scores = model.user_scores(history, now, row.get("last_event_epoch"), dict(row))
    preference = search.preference(model.item_ids, scores)
    return preference if np.isfinite(preference).any() else None


def _min_max(values: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1]; all equal (no preference among them): 0.5 for each, which reorders nothing."""
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.full(len(values), 0.5, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def tables_version(features_dir: Path) -> tuple:
    """What the search index is built from, as (modification time, size) per file: when it differs,
    the tables were rewritten."""
    out = []
    for name in (f"{TEXT_VIEW}.parquet", MANIFEST):
        try:
            stat = (features_dir / name).stat()
            out.append((stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


class SearchCache:
    """One data home's CatalogueSearch: built on the first ``get`` and again when the feature
    tables change. If a rebuild fails (a table caught half-written), the last one keeps answering."""

    def __init__(self, settings: Settings, encode: Encoder = _encode) -> None:
        self.features_dir, self.encode = settings.features_dir, encode
        self.blend = settings.serving.search_blend
        self._lock = threading.Lock()
        self._built: tuple[tuple, CatalogueSearch] | None = None

    def get(self) -> CatalogueSearch:
        """The current CatalogueSearch. NoTexts: the catalogue has no texts; FileNotFoundError:
        the feature tables are not built."""
        version = tables_version(self.features_dir)
        built = self._built
        if built is not None and built[0] == version:
            return built[1]
        with self._lock:  # one build at a time; the others then find it built
            built = self._built
            if built is not None and built[0] == version:
                return built[1]
            try:
                search = CatalogueSearch.from_features(self.features_dir, self.encode, self.blend)
            except (NoTexts, FileNotFoundError):
                self._built = None
                raise
            except Exception as exc:
                if built is None:
                    raise
                log.warning("the item text table did not load (%s: %s); searching the previous one",
                            type(exc).__name__, exc)
                return built[1]
            self._built = (version, search)
            log.info("search index built: %d items with text", len(search))
            return search
