"""Scoring of the sequence model (a mixin of SequenceModel): log-probabilities averaged over the
ensemble with the time signals, the caches that keep requests cheap (item tables, int8 scoring
tables, the LRU of encoder states), new items, item similarity and the return forecasts."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import cold_start, padded
from .quantize import scoring_table
from .value_head import ReturnForecast, anchor_features, forecast

if TYPE_CHECKING:
    from .base import Queries
    from .popularity import ItemClock
    from .sasrec_net import SASRecNet

SCORE_BATCH = 256
STATE_CACHE = 50_000  # users whose encoder state a serving process keeps (64 floats per network each)


class SequenceScoring:
    """Scoring of SequenceModel; the state it reads (nets, popularity, clock, blend, value, the
    caches) is SequenceModel's, set up in its __init__."""

    if TYPE_CHECKING:
        nets: list[SASRecNet]
        popularity: np.ndarray | None
        profile_width: int
        clock: ItemClock | None
        blend: dict
        value: dict | None
        int8_table_from: int
        _tables: list[torch.Tensor] | None
        _unit_tables: list[torch.Tensor] | None
        _states: tuple[list[torch.Tensor], OrderedDict] | None
        _scorers: tuple[list[torch.Tensor] | None, list]

        @property
        def net(self) -> SASRecNet | None: ...

    def time_signals(self, queries: Queries) -> torch.Tensor | None:
        """What the request time adds to each item's log-probability (None: nothing)."""
        weights = (self.blend["recent"], self.blend["popularity"])
        if self.clock is None or queries.now is None or weights == (0.0, 0.0):
            return None
        recent = np.log1p(self.clock.counts(queries.now, float(self.blend["days"])))
        ever = np.log1p(self.clock.counts(queries.now, None))
        return torch.from_numpy((weights[0] * recent + weights[1] * ever).astype(np.float32))

    def add_items(self, content: np.ndarray | None) -> bool:
        """New items are scored through their content (genres, text) alone, if the network fused
        content and the rows have its layout; they have no popularity or engagements yet."""
        assert self.net is not None and self.popularity is not None, "fit the model first"
        if content is None:
            return False
        try:  # the networks say whether they can: they fused content, and the rows have its layout
            for net in self.nets:  # all alike: the first refuses before any grows
                net.grow(torch.from_numpy(np.asarray(content, dtype=np.float32)))
        except ValueError:
            return False
        self.popularity = np.concatenate([self.popularity, np.zeros(len(content))])
        if self.clock is not None:
            self.clock.n_items = self.net.n_items
        self._tables = self._unit_tables = None
        return True

    def item_similarity(self, item: int) -> tuple[torch.Tensor, str] | None:
        """Cosine likeness over the learned item vectors (the first network's item table: id
        embeddings plus projected content), averaged with the cosine over the raw content (genres,
        text embedding) where the model fused content."""
        if self.net is None:
            return None
        if self._unit_tables is None:  # once per loaded model
            with torch.inference_mode():
                tables = [self.net.item_table()] + ([self.net.content] if self.net.content is not None else [])
                self._unit_tables = [torch.nn.functional.normalize(t.detach().float(), dim=1) for t in tables]
        likeness = sum(table @ table[item] for table in self._unit_tables) / len(self._unit_tables)
        likeness[0] = float("-inf")
        return likeness, "learned item embeddings and content" if len(self._unit_tables) > 1 else "learned item embeddings"

    # -- scoring --------------------------------------------------------------------------------
    def score(self, queries: Queries) -> torch.Tensor:
        assert self.net is not None and self.popularity is not None, "fit the model first"
        net = self.net
        with torch.inference_mode():
            for member in self.nets:
                if member.training:  # eval() walks every submodule: not on each request
                    member.eval()
            self._item_tables()
            parts = []
            for start in range(0, len(queries), SCORE_BATCH):
                part = queries.slice(start, start + SCORE_BATCH)
                context = part.context(self.profile_width) if net.context_projection is not None else None
                context = None if context is None else torch.from_numpy(context)
                states = self._history_states(part.histories)
                scores = sum(torch.log_softmax(member.logits(member.with_context(state, context), table), dim=1)
                             for member, table, state in zip(self.nets, self._scoring_tables(), states, strict=True)) / len(self.nets)
                signals = self.time_signals(part)
                if signals is not None:
                    scores = scores + signals
                parts.append(cold_start(scores, part.histories, self.popularity))
        return torch.cat(parts) if parts else torch.zeros(0, net.n_items + 1)

    def warm_states(self, histories: Iterable[np.ndarray], stop: Callable[[], bool] = lambda: False) -> int:
        """Fill the encoder-state cache with these histories (item indices, the most recently active
        user last; at most STATE_CACHE are kept), each encoded alone as a request encodes it, so the
        same state bit for bit and the users' next requests skip the transformer. ``stop`` is asked
        before each: True ends the warm-up there. Returns how many it encoded."""
        histories = [h for h in histories if len(h)][-STATE_CACHE:]
        done = 0
        with torch.inference_mode():
            for member in self.nets:
                if member.training:
                    member.eval()
            self._item_tables()
            for history in histories:
                if stop():
                    break
                self._history_states([history])
                done += 1
        return done

    def _item_tables(self) -> list[torch.Tensor]:
        """Each network's item table, built once per loaded model, not per request (and again after
        a fit changes the weights); call under inference_mode."""
        if self._tables is None:
            self._tables = [member.item_table() for member in self.nets]
        return self._tables

    def _scoring_tables(self) -> list:
        """What each network scores the catalogue against: its item table, or from
        ``int8_table_from`` items an int8 copy (quantize.Int8ItemTable), built once per item table."""
        scorers = getattr(self, "_scorers", None)
        if scorers is None or scorers[0] is not self._tables:
            scorers = self._scorers = (self._tables, [scoring_table(t, self.int8_table_from) for t in self._tables])
        return scorers[1]

    def _history_states(self, histories: list[np.ndarray]) -> list[torch.Tensor]:
        """Per network, the encoder's state after each history (users x dim, before the request's
        context is added). A single user's (a served request) is kept in a bounded LRU cache keyed
        by the history, valid while the item tables are: a returning user with no new events skips
        the transformer, and a new event (feedback, ingestion) is a new key. Batches are encoded
        together and not cached (a batch pads and multiplies differently in the last bits)."""
        net = self.nets[0]
        width = max(1, min(net.max_len, max((len(h) for h in histories), default=1)))
        if len(histories) != 1:
            sequences = padded(histories, width)
            return [member.encode_last(sequences, table) for member, table in zip(self.nets, self._tables, strict=True)]
        if self._states is None or self._states[0] is not self._tables:
            self._states = (self._tables, OrderedDict())
        cache = self._states[1]
        key = np.asarray(histories[0][-net.max_len:], dtype=np.int64).tobytes()
        states = cache.get(key)
        if states is None:
            sequences = padded(histories, width)
            states = [member.encode_last(sequences, table) for member, table in zip(self.nets, self._tables, strict=True)]
            cache[key] = states
        try:  # a search thread may share the cache with the request loop: a lost race only costs a recompute
            cache.move_to_end(key)
            while len(cache) > STATE_CACHE:
                cache.popitem(last=False)
        except KeyError:
            pass
        return states

    def forecast_returns(self, queries: Queries) -> ReturnForecast | None:
        """Each network's survival curve after the queries' histories, averaged (the ensemble's)."""
        net = self.net
        if net is None or not self.value or queries.now is None:
            return None
        edges = np.asarray(self.value["edges"], dtype=np.float64)
        features = anchor_features(np.asarray(queries.now, dtype=np.float64), queries.profiles, self.profile_width)
        curves = []
        with torch.inference_mode():
            self._item_tables()
            for start in range(0, len(queries), SCORE_BATCH):
                part = queries.slice(start, start + SCORE_BATCH)
                width = max(1, min(net.max_len, max((len(h) for h in part.histories), default=1)))
                sequences = padded(part.histories, width)
                side = torch.from_numpy(features[start:start + SCORE_BATCH])
                curves.append(sum(member.value_head.survival(member.value_head(member.encode_last(sequences, table), side))
                                  for member, table in zip(self.nets, self._tables, strict=True)) / len(self.nets))
        survival = torch.cat(curves) if curves else torch.ones(0, len(edges) - 1)
        return forecast(survival, edges, float(self.value["return_days"]))

    def forecast_appended(self, history: np.ndarray, candidates: np.ndarray, now: float,
                          profile: np.ndarray | None) -> ReturnForecast | None:
        """forecast_returns for ``history`` followed by each candidate in turn (had the user consumed
        it at ``now`` and left), encoding the history once per network (SASRecNet.encode_appended)."""
        net = self.net
        if net is None or not self.value:
            return None
        edges = np.asarray(self.value["edges"], dtype=np.float64)
        m = len(candidates)
        profiles = None if profile is None else np.repeat(np.asarray(profile, dtype=np.float32)[None], m, axis=0)
        side = torch.from_numpy(anchor_features(np.full(m, float(now)), profiles, self.profile_width))
        kept = torch.from_numpy(np.asarray(history, dtype=np.int64)[-(net.max_len - 1):] if net.max_len > 1
                                else np.zeros(0, dtype=np.int64))
        chosen = torch.from_numpy(np.asarray(candidates, dtype=np.int64))
        with torch.inference_mode():
            self._item_tables()
            survival = sum(member.value_head.survival(member.value_head(member.encode_appended(kept, chosen, table), side))
                           for member, table in zip(self.nets, self._tables, strict=True)) / len(self.nets)
        return forecast(survival, edges, float(self.value["return_days"]))
