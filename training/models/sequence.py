"""The sequence model: SASRecNet trained with cross-entropy over the whole catalogue at every
position of each user's sequence (or, for big catalogues, a sampled softmax with logQ
correction), early-stopped on the validation metric."""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .base import (CONTEXT_FEATURES, FitReport, Interactions, Queries, Recommender, Validate, cold_start, padded,
                   request_context)
from .distributed import agree, distributed, same_module, same_steps
from .popularity import ItemClock
from .quantize import INT8_TABLE_FROM, scoring_table
from .sasrec_net import SASRecNet
from .value_head import (TIME_FEATURES, ReturnForecast, anchor_features, bin_edges, fit_value_head, forecast,
                         survival_loss, value_anchors)

if TYPE_CHECKING:  # the model loads without the platform: only training needs settings
    from longview.settings import SequenceSettings, Settings

SCORE_BATCH = 256
STATE_CACHE = 50_000  # users whose encoder state a serving process keeps (64 floats per network each)
LOSS_CHUNK = 2048  # positions per slice of the full softmax (measured fastest on ml-1m-sasrec's 3,416 items)
LOSS_PAD = 256  # positions are padded to a multiple of this (LOSS_CHUNK is one)
# Candidate weights of the time signals, log1p(engagements in the recent window before the request)
# and log1p(all engagements before it), added to the log-probabilities; negative all-time weights
# with positive recent ones favour what is trending rather than what was always popular.
RECENT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
POPULARITY_WEIGHTS = (-1.0, -0.5, -0.25, 0.0, 0.25)


def bfloat16_native() -> bool:
    """Whether the CPU computes bfloat16 matmuls natively (AVX512-BF16 or AMX, through oneDNN)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def training_dtype(precision: str) -> torch.dtype:
    if precision == "bfloat16" or (precision == "auto" and bfloat16_native()):
        return torch.bfloat16
    return torch.float32


def training_rows(data: Interactions, max_len: int, context: bool = False, profiles: bool = False,
                  all_targets: bool = False
                  ) -> tuple[list[int], list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
    """Per user with a label: the user's position in ``data``, inputs (the last max_len items
    before each label), labels (the next item where it is a positive engagement, else 0; with
    ``all_targets`` the next item whatever the engagement) and, with
    ``context`` (the data must have times), each label's request context: the next event's time
    and the gap since the input's event, what a request at that moment would have said, followed
    with ``profiles`` by the user's profile as Feast knew it just before the label's event."""
    users, inputs, labels, contexts = [], [], [], []
    for user, (seq, pos) in enumerate(zip(data.sequences, data.positive, strict=True)):
        seq, pos = seq[-(max_len + 1):], pos[-(max_len + 1):]
        if len(seq) < 2 or not (all_targets or pos[1:].any()):
            continue
        users.append(user)
        inputs.append(seq[:-1])
        labels.append(seq[1:] if all_targets else np.where(pos[1:], seq[1:], 0))
        if context:
            times = data.times[user][-(max_len + 1):]  # type: ignore[index]
            rows = request_context(times[1:], times[:-1])
            if profiles:
                rows = np.concatenate([rows, data.profiles[user][-(max_len + 1):][1:]], axis=1)  # type: ignore[index]
            contexts.append(rows)
    return users, inputs, labels, (contexts if context else None)


def canonical_order(inputs: list[np.ndarray], labels: list[np.ndarray]) -> list[int]:
    """Row positions sorted by a digest of each row's items and labels: the same rows in any order
    come out the same (identical rows are interchangeable)."""
    digests = [hashlib.blake2b(x.astype(np.int64).tobytes() + b"|" + y.astype(np.int64).tobytes(),
                               digest_size=16).digest() for x, y in zip(inputs, labels, strict=True)]
    return sorted(range(len(digests)), key=digests.__getitem__)


def softmax_gradient(logits: torch.Tensor, targets: torch.Tensor, log_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's cross-entropy, and its gradient with respect to the logits divided by
    n = exp(log_n): (softmax - one-hot) / n, in place of autograd's several passes."""
    top = torch.logsumexp(logits, 1)
    losses = top - logits.gather(1, targets[:, None]).squeeze(1)
    gradient = torch.exp(logits - (top + log_n)[:, None])
    gradient[torch.arange(len(targets)), targets] -= torch.exp(-log_n)
    return losses, gradient


_compiled: dict[str, object] = {}


def softmax_kernel(compiled: bool):
    """softmax_gradient, fused by torch.compile into one pass over each slice (with the bfloat16
    matmuls, ml-1m-sasrec's benchmark went from 338 to 386-444 sequences/s) or eager where compiling is off or fails (no C++
    compiler)."""
    if not compiled or _compiled.get("failed"):
        return softmax_gradient
    if "kernel" not in _compiled:
        _compiled["kernel"] = torch.compile(softmax_gradient, dynamic=True)
    return _compiled["kernel"]


def full_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor,
                      compiled: bool = False, matmul_dtype: torch.dtype = torch.float32,
                      extra: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the whole catalogue (padding, row 0, excluded). The logits and their
    gradient are built a slice at a time and freed; the gradients reach the network through one
    backward call at the end, together with ``extra``'s (another task's loss on the same graph)."""
    # ``matmul_dtype`` bfloat16: the two thirds of the work that are matmuls run in bfloat16; the
    # softmax and the accumulated item gradient stay float32.
    n = len(targets)
    # Rows padded to a multiple of LOSS_PAD: few distinct matmul shapes, since oneDNN caches a
    # primitive per shape (without this, the ml-1m-sasrec benchmark's peak memory reached 11.7 GB).
    rows = -(-n // LOSS_PAD) * LOSS_PAD
    hid = torch.zeros(rows, hidden.shape[1], dtype=matmul_dtype)
    hid[:n] = hidden.detach()
    labels = torch.zeros(rows, dtype=torch.long)
    labels[:n] = targets - 1  # padding rows point at item 1; their loss and gradient are dropped
    items = table.detach()[1:].to(matmul_dtype)
    grad_hidden = torch.empty_like(hid)
    grad_items = torch.zeros_like(items, dtype=torch.float32)
    kernel, total = softmax_kernel(compiled), 0.0
    log_n = torch.tensor(math.log(n))  # a tensor: a float would recompile for every batch size
    for start in range(0, rows, LOSS_CHUNK):
        h = hid[start:start + LOSS_CHUNK]
        logits, chunk_labels = (h @ items.T).float(), labels[start:start + LOSS_CHUNK]
        try:
            losses, gradient = kernel(logits, chunk_labels, log_n)
        except Exception:  # torch.compile could not build its kernel here: eager gives the same numbers
            if kernel is softmax_gradient:
                raise
            _compiled["failed"] = True
            kernel = softmax_gradient
            losses, gradient = kernel(logits, chunk_labels, log_n)
        real = max(0, min(len(h), n - start))
        total += float(losses[:real].sum()) / n
        gradient[real:] = 0.0
        gradient = gradient.to(matmul_dtype)
        torch.mm(gradient, items, out=grad_hidden[start:start + LOSS_CHUNK])
        grad_items += (gradient.T @ h).float()
    grad_table = torch.cat([torch.zeros_like(items[:1]), grad_items])
    outputs, grads = [hidden, table], [grad_hidden[:n].to(hidden.dtype), grad_table.to(table.dtype)]
    if extra is not None:
        outputs.append(extra)
        grads.append(torch.ones_like(extra))
    torch.autograd.backward(outputs, grads)
    return torch.tensor(total)


def sampled_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor, log_q: torch.Tensor,
                         negatives: int, generator: torch.Generator, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against ``negatives`` items shared by the batch, drawn in proportion to
    popularity; subtracting log q (the sampling log-probability) keeps the estimate unbiased."""
    drawn = torch.multinomial(log_q.exp(), negatives, replacement=True, generator=generator)
    positive = (hidden * table[targets]).sum(-1, keepdim=True) - log_q[targets].unsqueeze(1)
    negative = hidden @ table[drawn].T - log_q[drawn]
    negative = negative.masked_fill(drawn[None, :] == targets[:, None], float("-inf"))
    loss = F.cross_entropy(torch.cat([positive, negative], dim=1), torch.zeros(len(targets), dtype=torch.long))
    (loss if extra is None else loss + extra).backward()
    return loss.detach()


class SequenceModel(Recommender):
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

    # -- training -------------------------------------------------------------------------------
    def fit(self, data: Interactions, settings: Settings, validate: Validate | None = None,
            progress: bool = True) -> FitReport:
        opts = settings.sequence
        self.options = opts.model_dump()
        content = torch.from_numpy(data.content) if opts.content and data.content is not None else None
        use_context = opts.context and data.times is not None
        self.profile_width = data.profile_width if use_context and opts.profile else 0
        self.popularity = data.counts()
        value = settings.value
        value_on = value.enabled and data.times is not None
        users, inputs, labels, contexts = training_rows(data, opts.max_len, use_context, self.profile_width > 0,
                                                        opts.targets == "all")
        if not inputs:
            raise ValueError("no training sequences: every user has fewer than two interactions")
        targets = None
        if value_on:
            edges = bin_edges(value.return_days, value.horizon_days)
            self.value = {"edges": edges.tolist(), "return_days": value.return_days,
                          "features": TIME_FEATURES + self.profile_width, "loss_weight": value.loss_weight}
            targets = (value_anchors(data, users, edges, self.profile_width), [data.sequences[u] for u in users])
        else:
            self.value = None
        # Under torchrun each rank trains on its own shard of users; DDP averages the gradients.
        # Users are taken in an order of their own rows, not of their ids: ids are pseudonyms keyed
        # per data home, and batches (so the trained network) would otherwise differ between homes.
        rank, world = distributed()
        mine = canonical_order(inputs, labels)[rank::world]
        self.shard = [users[i] for i in mine]  # which users this process trained on
        rows = ([inputs[i] for i in mine], [labels[i] for i in mine],
                None if contexts is None else [contexts[i] for i in mine],
                None if targets is None else tuple([part[i] for i in mine] for part in targets))
        dtype = training_dtype(opts.precision)
        report = FitReport(notes=[f"training precision: {'bfloat16 softmax matmuls' if dtype == torch.bfloat16 else 'float32'}"])
        start = time.perf_counter()
        members = []
        for member in range(opts.ensemble):
            torch.manual_seed(settings.seed + member)
            net = SASRecNet(data.n_items, opts.max_len, opts.dim, opts.blocks, opts.heads, opts.dropout, content,
                            CONTEXT_FEATURES + self.profile_width if use_context else 0,
                            *self._value_layout())
            self.nets = [net]  # validation scores this member alone
            self._train_network(net, rows, settings, settings.seed + member, dtype, validate, report,
                                member if opts.ensemble > 1 else None, progress, rank, world)
            if rows[3] is not None:
                note = fit_value_head(net, *rows[3], settings.value.head_steps, settings.value.head_learning_rate,
                                      settings.seed + member)
                same_module(net.value_head, world)  # under torchrun: rank 0's head, fitted on its users
                report.notes.append(f"value head of network {member + 1}: {note}")
            members.append(net)
        self.nets, self._tables, self._unit_tables = members, None, None
        if opts.ensemble > 1 and validate is not None:
            (metric,) = agree([validate(self) if rank == 0 else 0.0], world)
            report.notes.append(f"ensemble of {opts.ensemble} networks: validation {metric:.4f}")
        if opts.time_signals and data.times is not None and validate is not None:
            self._fit_time_signals(data, settings, validate, report, rank, world)
        report.train_seconds = time.perf_counter() - start
        return report

    def _train_network(self, net: SASRecNet, rows: tuple, settings: Settings, seed: int, dtype: torch.dtype,
                       validate: Validate | None, report: FitReport, member: int | None, progress: bool,
                       rank: int, world: int) -> None:
        """Train one network, early-stopped on validation (the best state restored); its epochs
        and validation passes go to ``report`` (tagged with ``member`` in an ensemble)."""
        from rich.console import Console
        from rich.progress import Progress

        opts = settings.sequence
        inputs, labels, contexts, value_targets = rows
        rng = np.random.default_rng(seed)
        anchor_rng = np.random.default_rng([seed, 1])  # the value head's draws leave the batches as they were
        generator = torch.Generator().manual_seed(seed)
        network: torch.nn.Module = net
        if world > 1:
            network = torch.nn.parallel.DistributedDataParallel(net)
        optimiser = torch.optim.Adam(net.parameters(), lr=opts.learning_rate, betas=(0.9, 0.98),
                                     weight_decay=opts.weight_decay)
        batches_per_epoch = -(-len(inputs) // opts.batch_size)
        total_steps = max(1, opts.epochs * batches_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps))
            if opts.lr_schedule == "cosine" else 1.0)
        counts = self.popularity + 1.0
        log_q = torch.from_numpy(np.log(counts / counts[1:].sum())).float()
        log_q[0] = float("-inf")  # padding is never drawn

        def loss_fn(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor,
                    extra: torch.Tensor | None) -> torch.Tensor:
            if opts.negatives:
                return sampled_softmax_loss(hidden, targets, table, log_q, opts.negatives, generator, extra)
            return full_softmax_loss(hidden, targets, table, opts.compile, dtype, extra)
        suffix = f"_member_{member}" if member else ""  # the first network's epoch is "epoch", as alone
        tag = {} if member is None else {"member": float(member)}
        name = "sequence model" if member is None else f"sequence model {member + 1}/{opts.ensemble}"
        best_metric, best_state, waited = -1.0, None, 0
        start = time.perf_counter()
        stepping = 0.0  # seconds in training steps alone (validation passes excluded): the throughput
        with Progress(disable=not progress, console=Console(stderr=True)) as bar:
            task = bar.add_task(f"{name}: {len(inputs):,} sequences", total=opts.epochs)
            for epoch in range(1, opts.epochs + 1):
                epoch_start = time.perf_counter()
                total, seen = self._train_epoch(network, opts, inputs, labels, contexts, value_targets,
                                                self.value["loss_weight"] if self.value else 0.0, rng, anchor_rng,
                                                optimiser, schedule, loss_fn, world)
                stepping += time.perf_counter() - epoch_start
                row = {**tag, "epoch": float(epoch), "loss": total / max(seen, 1),
                       "sequences_per_second": len(inputs) * epoch / stepping}
                self._tables = self._unit_tables = None
                stop = False
                if validate is not None and (epoch % opts.eval_every == 0 or epoch == opts.epochs):
                    (metric,) = agree([validate(self) if rank == 0 else 0.0], world)
                    row["validation"] = metric
                    if metric > best_metric:
                        best_metric, best_state, waited = metric, copy.deepcopy(net.state_dict()), 0
                        report.chosen[f"epoch{suffix}"] = float(epoch)
                    else:
                        waited += 1
                        stop = waited >= opts.patience
                report.curve.append(row)
                report.epochs += 1
                elapsed = time.perf_counter() - start
                note = f" validation {row['validation']:.4f}" if "validation" in row else ""
                description = f"{name}: epoch {epoch} loss {row['loss']:.3f}{note}"
                bar.update(task, advance=1, description=description)
                if progress and note and not bar.console.is_terminal:  # a log file gets a line per validation
                    bar.console.log(f"{description} ({elapsed / 60:.1f} min)")
                if stop:
                    report.notes.append(f"{name}: early stop after {epoch} epochs: no better validation in "
                                        f"{opts.patience} passes")
                    break
                over_budget = opts.time_budget_minutes is not None and elapsed > opts.time_budget_minutes * 60
                if agree([float(over_budget)], world)[0]:
                    report.notes.append(f"{name}: stopped at the time budget ({opts.time_budget_minutes} min) "
                                        f"after {epoch} epochs")
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self._tables = self._unit_tables = None

    def refit(self, data: Interactions, settings: Settings) -> None:
        """The networks stay as validation chose them; their popularity (for users without
        history) and clock (the time signals) take in ``data``'s more recent interactions, and each
        value head is fitted again on the encoder's states at every visit in ``data`` (the
        returns seen since training are the freshest evidence of who comes back)."""
        self.popularity = data.counts()
        if self.clock is not None:
            self.clock = ItemClock.of(data)
        if self.value and data.times is not None:
            users = [u for u, seq in enumerate(data.sequences) if len(seq)]
            anchors = value_anchors(data, users, np.asarray(self.value["edges"]), self.profile_width)
            _, world = distributed()
            for member, net in enumerate(self.nets):
                fit_value_head(net, anchors, [data.sequences[u] for u in users], settings.value.head_steps,
                               settings.value.head_learning_rate, settings.seed + member)
                same_module(net.value_head, world)
            self._tables = self._unit_tables = None

    def _fit_time_signals(self, data: Interactions, settings: Settings, validate: Validate, report: FitReport,
                          rank: int, world: int) -> None:
        """Pick the weights of the time signals on validation (both zero: time-blind, if nothing helps)."""
        self.clock = ItemClock.of(data)
        results = {}
        for recent in RECENT_WEIGHTS:
            for popularity in POPULARITY_WEIGHTS:
                self.blend = {"recent": recent, "popularity": popularity, "days": settings.recent_popularity_days}
                (results[recent, popularity],) = agree([validate(self) if rank == 0 else 0.0], world)
        blind = results[0.0, 0.0]
        (recent, popularity), metric = max(results.items(), key=lambda kv: (kv[1], -abs(kv[0][0]) - abs(kv[0][1])))
        self.blend.update(recent=recent, popularity=popularity)
        report.chosen.update({"recent_weight": recent, "popularity_weight": popularity})
        report.notes.append(f"time signals: recent {recent:g}, all-time {popularity:g} (validation {blind:.4f} "
                            f"time-blind, {metric:.4f} with them)")

    def time_signals(self, queries: Queries) -> torch.Tensor | None:
        """What the request time adds to each item's log-probability (None: nothing)."""
        weights = (self.blend["recent"], self.blend["popularity"])
        if self.clock is None or queries.now is None or weights == (0.0, 0.0):
            return None
        recent = np.log1p(self.clock.counts(queries.now, float(self.blend["days"])))
        ever = np.log1p(self.clock.counts(queries.now, None))
        return torch.from_numpy((weights[0] * recent + weights[1] * ever).astype(np.float32))

    @staticmethod
    def _train_epoch(network: torch.nn.Module, opts: SequenceSettings, inputs: list[np.ndarray],
                     labels: list[np.ndarray], contexts: list[np.ndarray] | None, value_targets: tuple | None,
                     value_weight: float, rng: np.random.Generator, anchor_rng: np.random.Generator,
                     optimiser: torch.optim.Optimizer, schedule, loss_fn, world: int) -> tuple[float, int]:
        """One pass over the sequences in batches of similar length (little padding), jittered so
        that they differ every epoch. Returns the summed next-item loss and the number of labels;
        with ``value_targets`` (each user's value_head.Anchors and whole sequence) the value head's
        loss on the batch's users, each cut at one visit end, is added with ``value_weight``."""
        network.train()
        lengths = np.array([len(s) for s in inputs])
        order = np.argsort(lengths + rng.uniform(0, opts.max_len / 10, len(lengths)), kind="stable")
        batches = [order[i:i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
        total, seen = 0.0, 0
        for b in rng.permutation(len(batches))[:same_steps(len(batches), world)]:
            rows = batches[b]
            width = int(lengths[rows].max())
            xs, ys = [inputs[r] for r in rows], [labels[r] for r in rows]
            cs = None if contexts is None else [contexts[r] for r in rows]
            features = None
            if value_targets is not None:  # the batch's users again, each cut at a visit end drawn anew
                anchors, sequences = value_targets
                drawn = [(r, int(anchor_rng.integers(len(anchors[r].positions)))) for r in rows]
                crops = [sequences[r][:anchors[r].positions[a] + 1][-opts.max_len:] for r, a in drawn]
                width = max(width, max(len(crop) for crop in crops))
                xs += crops
                ys += [crop[:0] for crop in crops]  # no next-item labels
                if cs is not None:
                    cs += [cs[0][:0]] * len(crops)
                features = torch.from_numpy(np.stack([anchors[r].features[a] for r, a in drawn]))
                bins = torch.from_numpy(np.array([anchors[r].bins[a] for r, a in drawn]))
                returned = torch.from_numpy(np.array([anchors[r].returned[a] for r, a in drawn]))
            x, y = padded(xs, width), padded(ys, width)
            c = None if cs is None else padded(cs, width, np.float32)
            optimiser.zero_grad(set_to_none=True)
            hidden, table, value_logits = network(x, c, features)
            extra = None
            if value_logits is not None:
                extra = survival_loss(value_logits, bins, returned) * value_weight
            mask = y > 0
            loss = loss_fn(hidden[mask], y[mask], table, extra)  # back-propagated inside
            optimiser.step()
            schedule.step()
            total += float(loss) * int(mask.sum())
            seen += int(mask.sum())
        return total, seen

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
