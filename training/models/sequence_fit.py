"""The sequence model's fit loop (a mixin of SequenceModel): the networks trained and
early-stopped on validation, the ensemble, the value heads, the time signals' weights, and refit."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import CONTEXT_FEATURES, FitReport, padded
from .distributed import agree, distributed, same_module, same_steps
from .popularity import ItemClock
from .sasrec_net import SASRecNet
from .sequence_loss import full_softmax_loss, sampled_softmax_loss, training_dtype
from .sequence_rows import canonical_order, training_rows
from .value_head import TIME_FEATURES, bin_edges, fit_value_head, survival_loss, value_anchors

if TYPE_CHECKING:  # the model loads without the platform: only training needs settings
    from longview.settings import SequenceSettings, Settings

    from .base import Interactions, Validate

# Candidate weights of the time signals, log1p(engagements in the recent window before the request)
# and log1p(all engagements before it), added to the log-probabilities; negative all-time weights
# with positive recent ones favour what is trending rather than what was always popular.
RECENT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
POPULARITY_WEIGHTS = (-1.0, -0.5, -0.25, 0.0, 0.25)


class SequenceFitting:
    """Training of SequenceModel; the state it fills (nets, popularity, value, clock, blend, ...)
    is SequenceModel's, set up in its __init__."""

    if TYPE_CHECKING:
        nets: list[SASRecNet]
        popularity: np.ndarray | None
        options: dict
        profile_width: int
        clock: ItemClock | None
        blend: dict
        value: dict | None
        shard: list[int]
        _tables: list[torch.Tensor] | None
        _unit_tables: list[torch.Tensor] | None

        def _value_layout(self) -> tuple[int, int]: ...

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
