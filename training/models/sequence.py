"""The sequence model: SASRecNet trained with cross-entropy over the whole catalogue at every
position of each user's sequence (or, for big catalogues, a sampled softmax with logQ
correction), early-stopped on the validation metric.

The model is split by concern: its training rows (sequence_rows), loss kernels (sequence_loss),
fit loop (sequence_fit), scoring and its caches (sequence_scoring); its persistence is here.
Tunable constants (LOSS_CHUNK, STATE_CACHE, ...) are read from the module that uses them: patch
them there, not here."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from .base import CONTEXT_FEATURES, Recommender
from .popularity import ItemClock
from .quantize import INT8_TABLE_FROM
from .sasrec_net import SASRecNet
from .sequence_fit import POPULARITY_WEIGHTS, RECENT_WEIGHTS, SequenceFitting
from .sequence_loss import (
    LOSS_CHUNK,
    LOSS_PAD,
    bfloat16_native,
    full_softmax_loss,
    sampled_softmax_loss,
    softmax_gradient,
    softmax_kernel,
    training_dtype,
)
from .sequence_rows import canonical_order, training_rows
from .sequence_scoring import SCORE_BATCH, STATE_CACHE, SequenceScoring

# Re-exported: what was importable from here before the split still is.
__all__ = ["LOSS_CHUNK", "LOSS_PAD", "POPULARITY_WEIGHTS", "RECENT_WEIGHTS", "SCORE_BATCH", "STATE_CACHE",
           "SequenceModel", "bfloat16_native", "canonical_order", "full_softmax_loss", "sampled_softmax_loss",
           "softmax_gradient", "softmax_kernel", "training_dtype", "training_rows"]


class SequenceModel(SequenceFitting, SequenceScoring, Recommender):
    name = "sequence"
    # Catalogues of this many items or more are scored against an int8 copy of the item table
    # (quantize.Int8ItemTable); an instance may set its own (quantization benchmark, tests).
    int8_table_from = INT8_TABLE_FROM

    def __init__(self, nets: list[SASRecNet] | None = None, popularity: np.ndarray | None = None,
                 options: dict | None = None, clock: ItemClock | None = None, blend: dict | None = None,
                 profile_width: int = 0, value: dict | None = None) -> None:
        self.nets, self.popularity = nets or [], popularity  # an ensemble: log-probabilities averaged
        self.profile_width = profile_width  # user-profile columns after the request context (0: none)
        self.options = options or {}  # the sequence settings it was trained with
        self.clock = clock  # engagement times, for the time signals (None: time-blind)
        self.blend = blend or {"recent": 0.0, "popularity": 0.0, "days": 7.0}
        self._tables: list[torch.Tensor] | None = None
        self._unit_tables: list[torch.Tensor] | None = None  # for item_similarity
        self._states: tuple[list[torch.Tensor], OrderedDict] | None = None  # _history_states's cache
        # The long-term value head's layout (bin edges in days, H, side inputs), None: no head.
        self.value = value

    def _value_layout(self) -> tuple[int, int]:
        """(side inputs, bins) of each network's value head; (0, 0): none."""
        if not self.value:
            return 0, 0
        return int(self.value["features"]), len(self.value["edges"]) - 1

    @property
    def net(self) -> SASRecNet | None:
        """The first network (the only one unless ``ensemble`` > 1): its layout is every member's."""
        return self.nets[0] if self.nets else None

    # -- saving ---------------------------------------------------------------------------------
    def config(self) -> dict:
        net = self.net
        assert net is not None
        return {"n_items": net.n_items, "content_features": None if net.content is None
                else int(net.content.shape[1]), "options": self.options, "blend": self.blend,
                "context_features": 0 if net.context_projection is None else CONTEXT_FEATURES + self.profile_width,
                "profile_features": self.profile_width, "networks": len(self.nets), "value": self.value}

    def tensors(self) -> dict[str, torch.Tensor]:
        assert self.net is not None and self.popularity is not None
        clock = {} if self.clock is None else {f"clock.{k}": v for k, v in self.clock.tensors().items()}
        # The first network's tensors are "net.*" (as before ensembles), the others' "net1.*", ...
        nets = {f"net{i or ''}.{k}": v for i, net in enumerate(self.nets) for k, v in net.state_dict().items()}
        return {**nets,
                "popularity": torch.as_tensor(self.popularity), **clock}

    @classmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "SequenceModel":
        opts = config["options"]
        nets = []
        for i in range(int(config.get("networks", 1))):
            prefix = f"net{i or ''}."
            content = tensors.get(f"{prefix}content")
            net = SASRecNet(int(config["n_items"]), int(opts["max_len"]), int(opts["dim"]), int(opts["blocks"]),
                            int(opts["heads"]), float(opts["dropout"]), content if config.get("content_features") else None,
                            int(config.get("context_features", 0)), *cls(value=config.get("value"))._value_layout())
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            nets.append(net.eval())
        clock = None
        if "clock.items" in tensors:
            clock = ItemClock.restore({k[6:]: v for k, v in tensors.items() if k.startswith("clock.")},
                                      int(config["n_items"]))
        return cls(nets, tensors["popularity"].numpy(), opts, clock, config.get("blend"),
                   int(config.get("profile_features", 0)), config.get("value"))
