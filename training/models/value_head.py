"""The long-term value head: after a visit (a session) ends, does the user come back, and when.

A discrete-time survival model (Gensheimer and Narasimhan's nnet-survival): the time to the next
visit falls in one of a few bins of days up to a horizon, and the head predicts each bin's hazard
(the chance of returning in the bin, given not back before it). Visits that are not followed by
another before the data ends are censored: they only say "not back by then", which is exactly what
a churned user's last visit says, so they train the head instead of being dropped. The chance of
returning within H days and the expected days to return (restricted to the horizon) both follow
from the hazards.

The head reads the sequence encoder's state after the visit's last item (the encoder is shared with
next-item prediction, so both tasks shape it), the hour and weekday of that moment and the user's
profile as Feast had it just after the visit (activity counts, return gaps, active days, taste)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import DAY_SECONDS, Interactions, padded, request_context

if TYPE_CHECKING:
    from .sasrec_net import SASRecNet

TIME_FEATURES = 4  # hour and weekday of the visit's end, as points on circles
# Bin edges in days (0 first); the horizon and H are added, edges past the horizon dropped.
EDGES_DAYS = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 21.0, 30.0, 60.0, 90.0, 180.0, 365.0)


def bin_edges(return_days: float, horizon_days: float) -> np.ndarray:
    """Bin edges from 0 to the horizon, with H (``return_days``) among them."""
    if not 0 < return_days <= horizon_days:
        raise ValueError(f"return_days ({return_days}) must be positive and at most horizon_days ({horizon_days})")
    edges = {e for e in EDGES_DAYS if e < horizon_days} | {float(return_days), float(horizon_days)}
    return np.array(sorted(edges), dtype=np.float64)


def visit_ends(times: np.ndarray, visits: np.ndarray) -> np.ndarray:
    """Positions where a visit ends: the last event of the sequence and every event followed by
    the start of another visit (``visits``: True where a visit starts)."""
    n = len(times)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[visits[1:], True])


def returns_after(times: np.ndarray, visits: np.ndarray, observed_until: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per visit end (visit_ends): its position, the days until the next visit starts (or, for the
    last visit, until ``observed_until``: censored) and whether a return was seen."""
    ends = visit_ends(times, visits)
    nxt = np.r_[times[1:], np.nan][ends]
    returned = ~np.isnan(nxt)
    days = np.where(returned, nxt, observed_until) - times[ends]
    return ends, np.maximum(days, 0.0) / DAY_SECONDS, returned


def survival_targets(days: np.ndarray, returned: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin, event) per visit: the bin the time to return falls in (len(edges) - 1: past the
    horizon) and whether the return happened in it (False: censored in it, or past the horizon).
    A censored visit counts as having survived only the bins it fully outlived."""
    bins = np.searchsorted(edges, days, side="right") - 1
    past = bins >= len(edges) - 1
    return np.where(past, len(edges) - 1, bins).astype(np.int64), (returned & ~past)


def survival_loss(logits: torch.Tensor, bins: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the discrete-time hazards ``logits`` (n x B): survived every
    bin before ``bins``, then returned in it where ``events``."""
    b = logits.shape[1]
    survived = torch.arange(b, device=logits.device)[None, :] < bins[:, None]
    returned = F.one_hot(bins.clamp(max=b - 1), b).bool() & events[:, None] & (bins < b)[:, None]
    ll = F.logsigmoid(-logits) * survived + F.logsigmoid(logits) * returned
    return -ll.sum(1).mean()


@dataclass
class ReturnForecast:
    """Per user: the chance of a return within H days and the expected days to return (restricted
    to the horizon: a user not back by then counts the horizon)."""

    within: np.ndarray
    expected_days: np.ndarray
    return_days: float
    horizon_days: float
    survival: np.ndarray  # users x bins: the chance of not being back by each bin's end
    edges: np.ndarray  # the bins' edges in days (0 first)


def forecast(survival: torch.Tensor, edges: np.ndarray, return_days: float) -> ReturnForecast:
    """From survival at each bin's end (n x B: the chance of not being back by then)."""
    s = survival.double().numpy()
    at = int(np.searchsorted(edges, return_days)) - 1  # the bin that ends at H
    widths = np.diff(edges)
    before = np.concatenate([np.ones((len(s), 1)), s[:, :-1]], axis=1)  # survival at each bin's start
    expected = ((before + s) / 2 * widths).sum(1)  # the area under the survival curve, bin by bin
    return ReturnForecast(1.0 - s[:, at], expected, float(return_days), float(edges[-1]), s, edges)


def anchor_features(times: np.ndarray, profiles: np.ndarray | None, profile_width: int) -> np.ndarray:
    """The head's side inputs at visit ends: hour and weekday (zeros for a time that is not a
    finite number), then the profile (zeros if unknown)."""
    times = np.asarray(times, dtype=np.float64)
    finite = np.isfinite(times)
    clock = request_context(np.where(finite, times, 0.0), np.where(finite, times, 0.0))[:, :TIME_FEATURES]
    clock[~finite] = 0.0
    if not profile_width:
        return clock
    if profiles is None or profiles.shape != (len(times), profile_width):
        profiles = np.zeros((len(times), profile_width), dtype=np.float32)
    return np.concatenate([clock, profiles.astype(np.float32)], axis=1)


@dataclass
class Anchors:
    """One user's visit ends, each a training example of the value head: its position in the
    user's sequence, survival bin (len(edges) - 1: past the horizon), whether the return was seen
    in it, and the head's side inputs there (anchor_features)."""

    positions: np.ndarray
    bins: np.ndarray
    returned: np.ndarray
    features: np.ndarray


def value_anchors(data: Interactions, users: list[int], edges: np.ndarray, profile_width: int) -> list[Anchors]:
    """Every visit end of each of ``users`` (positions in ``data``), with the profile just after
    its event. The head learns from the encoder's state with the sequence cut at the visit end,
    exactly what it reads when asked at that moment; a state read in the middle of a longer
    sequence would tell, by its positions counted from the end, that the user came back."""
    out = []
    for user in users:
        times = data.times[user]  # type: ignore[index]
        until = float(times[-1]) if data.observed_until is None else float(data.observed_until[user])
        ends, days, returned = returns_after(times, data.visit_starts(user), until)
        bins, seen = survival_targets(days, returned, edges)
        profiles = None
        if profile_width and data.profiles is not None:
            final = (data.final_profiles[user] if data.final_profiles is not None
                     else np.zeros(profile_width, dtype=np.float32))
            profiles = np.vstack([data.profiles[user][1:], final[None, :]])[ends]  # just after each event
        out.append(Anchors(ends, bins, seen, anchor_features(times[ends], profiles, profile_width)))
    return out


def fit_value_head(net: SASRecNet, anchors: list[Anchors], sequences: list[np.ndarray], steps: int,
                   learning_rate: float, seed: int, batch: int = 256) -> str:
    """Fit ``net``'s value head on its trained encoder's states at every visit end (each sequence
    cut there, as the head reads it when asked), full batch, early-stopped on the loss of a tenth
    of the users held out; returns a note of what it did. Training with the encoder draws one
    visit per user and step: too few steps for the head to converge on small data."""
    assert net.value_head is not None
    crops, owner = [], []
    for user, (a, sequence) in enumerate(zip(anchors, sequences, strict=True)):
        crops += [sequence[:p + 1][-net.max_len:] for p in a.positions]
        owner += [user] * len(a.positions)
    order = np.argsort([len(c) for c in crops], kind="stable")  # little padding per chunk
    states = torch.empty(len(crops), net.dim)
    net.eval()
    with torch.no_grad():
        table = net.item_table()
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            chunk = [crops[r] for r in rows]
            states[torch.from_numpy(rows)] = net.encode_last(padded(chunk, max(len(c) for c in chunk)), table)
    x = torch.from_numpy(np.concatenate([a.features for a in anchors]))
    bins = torch.from_numpy(np.concatenate([a.bins for a in anchors]))
    returned = torch.from_numpy(np.concatenate([a.returned for a in anchors]))
    held = torch.from_numpy((np.random.default_rng([seed, 2]).random(len(anchors)) < 0.1)[np.asarray(owner)])
    if held.all() or not held.any():  # too few users to hold some out: fit on all, for the set steps
        held = torch.zeros(len(crops), dtype=torch.bool)
    head, fit = net.value_head, ~held
    optimiser = torch.optim.Adam(head.parameters(), lr=learning_rate, weight_decay=1e-4)
    best, best_state, waited, first, step = float("inf"), None, 0, None, 0
    for step in range(1, steps + 1):
        head.train()
        optimiser.zero_grad(set_to_none=True)
        survival_loss(head(states[fit], x[fit]), bins[fit], returned[fit]).backward()
        optimiser.step()
        if held.any() and step % 10 == 0:
            head.eval()
            with torch.no_grad():
                loss = float(survival_loss(head(states[held], x[held]), bins[held], returned[held]))
            first = loss if first is None else first
            if loss < best - 1e-5:
                best, best_state, waited = loss, copy.deepcopy(head.state_dict()), 0
            else:
                waited += 1
                if waited >= 5:  # fifty steps without a better held-out loss
                    break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    held_out = f"held-out loss {first:.4f} -> {best:.4f}" if best_state is not None else "no users held out"
    return f"fitted on {len(crops):,} visits, {step} steps, {held_out}"


class ValueHead(nn.Module):
    """Encoder state and side inputs to one hazard logit per bin: a small MLP over both, plus a
    linear term of the side inputs (wide and deep), so the head can be at least the churn
    baseline's logistic regression on the same profile. The side inputs are already on small
    scales (log counts, circles), and are not normalised per row: their size is the signal."""

    def __init__(self, dim: int, features: int, bins: int) -> None:
        super().__init__()
        self.features, self.bins = features, bins
        self.deep = nn.Sequential(nn.Linear(dim + features, dim), nn.GELU(), nn.Linear(dim, bins))
        self.wide = nn.Linear(features, bins, bias=False) if features else None

    def forward(self, hidden: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.wide is None:
            return self.deep(hidden)
        features = features.to(hidden.dtype)
        return self.deep(torch.cat([hidden, features], dim=-1)) + self.wide(features)

    @staticmethod
    def survival(logits: torch.Tensor) -> torch.Tensor:
        """The chance of not being back by each bin's end."""
        return torch.exp(torch.cumsum(F.logsigmoid(-logits.float()), dim=-1))
