"""Item content as model input: rows of Feast's content service to index-aligned matrices."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from training.content import content_matrix


def test_genres_and_text_line_up_with_the_item_index():
    frame = pd.DataFrame({"item_id": ["b", "a", "c"], "genres": ["Drama|Comedy", "Comedy", None],
                          "text_embedding": [[0.0, 1.0], [1.0, 0.0], None]})
    content = content_matrix(frame, ["a", "b", "c", "new"])
    assert content.genres.shape == (5, 2)  # padding row, then a, b, c, new; genres Comedy, Drama
    assert content.genres[1].tolist() == [1.0, 0.0] and content.genres[2].tolist() == [1.0, 1.0]
    assert not content.genres[0].any() and not content.genres[3].any() and not content.genres[4].any()
    assert content.vectors.shape == (5, 4)
    assert content.vectors[1, 2:].tolist() == [1.0, 0.0] and content.vectors[2, 2:].tolist() == [0.0, 1.0]
    assert not content.vectors[4].any(), "an item Feast knows nothing of gets zeros, not an error"


def test_bad_values_become_zeros_not_nans():
    frame = pd.DataFrame({"item_id": ["a", "b", "a"], "genres": ["", "X", "Y"],
                          "text_embedding": [[math.nan, 1.0], [1.0, 2.0, 3.0], [math.inf, 0.5]]})
    content = content_matrix(frame, ["a", "b"])
    assert np.isfinite(content.vectors).all()
    assert content.vectors[1, 2:].tolist() == [0.0, 0.5]
    assert content.genres[1].tolist() == [0.0, 1.0], "the last row of a duplicated item wins"
    assert content.vectors[2, 2:].tolist() == [0.0, 0.0], "a vector of the wrong width is left out"


def test_data_without_content_gives_none():
    frame = pd.DataFrame({"item_id": ["a"], "genres": [""]})
    content = content_matrix(frame, ["a"])
    assert content.genres is None and content.vectors is None
