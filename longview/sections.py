"""The settings' sections, one typed model each (``LONGVIEW_<SECTION>__<FIELD>`` in the environment,
a section of the same name in a profile or params.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SequenceSettings(BaseModel):
    """The SASRec-style sequence model (``LONGVIEW_SEQUENCE__DIM=128`` and so on)."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(default=64, ge=8, le=1024)
    blocks: int = Field(default=2, ge=1, le=12)
    heads: int = Field(default=1, ge=1, le=16)
    # 0.5, SASRec's setting for small data, was best on ml-100k's validation users (0.2, its setting
    # for the denser MovieLens-1M, is what the ml-1m-sasrec benchmark runs with).
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    max_len: int = Field(default=200, ge=2, le=4096, description="most recent items a user is read by")
    batch_size: int = Field(default=128, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    epochs: int = Field(default=20, ge=0, description="at most; early stopping may end sooner")
    # Cosine decay of the learning rate to zero over `epochs` (constant: no decay).
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    eval_every: int = Field(default=3, ge=1, description="epochs between validation passes")
    patience: int = Field(default=5, ge=1, description="validation passes without improvement before stopping")
    time_budget_minutes: float | None = Field(default=None, gt=0, description="stop training after this long")
    # Full cross-entropy over the catalogue by default; a number samples that many shared negatives
    # per batch (popularity-proportional, logQ-corrected) for catalogues too big to score whole.
    negatives: int | None = Field(default=None, ge=1)
    # Networks trained from seeds seed, seed + 1, ... whose log-probabilities are averaged: on small
    # data one network's validation NDCG@10 moves with its seed by as much as the gaps between
    # settings (ml-100k: 0.134 and 0.126 for seeds 0 and 1; the README's table of the defaults).
    ensemble: int = Field(default=3, ge=1, le=16, description="networks averaged (each trained in turn)")
    # What each position learns to predict: the next interaction whatever it was (more signal; on
    # ml-100k's validation users, three networks: 0.144 against 0.138 for positive engagements
    # alone), or the next positive engagement only. Evaluation counts positive engagements only.
    targets: Literal["positive", "all"] = "all"
    content: bool = Field(default=True, description="fuse genres and text embeddings (from Feast) with item ids")
    # Where the data has real times: the request's hour, weekday and the gap since the user's last
    # event as side inputs (training/models/base.py request_context).
    context: bool = Field(default=True, description="request-time side inputs (hour, weekday, gap since last visit)")
    # With the request context: the user's profile from Feast (activity counts, return gaps, session
    # depth, genre taste: training/models/base.py PROFILE_FIELDS) as it stood at the request.
    profile: bool = Field(default=True, description="user-profile side inputs from Feast")
    # The full-catalogue softmax's matmuls (two thirds of a training step) in bfloat16, its softmax
    # and gradients' sums in float32; auto: bfloat16 where the CPU computes it natively
    # (AVX512-BF16, AMX), float32 elsewhere (emulated bfloat16 is slower). Scoring stays float32.
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    # torch.compile the full-catalogue softmax into one pass per slice (needs a C++ compiler; without
    # one, eager with the same numbers); the first compile in a process takes seconds (inductor caches it).
    compile: bool = Field(default=True, description="fuse the full-catalogue softmax with torch.compile")
    # Where the data has real times: add recent (LONGVIEW_RECENT_POPULARITY_DAYS) and all-time
    # popularity at the request time to the model's log-probabilities, weights picked on validation.
    time_signals: bool = Field(default=True, description="blend in popularity at the request time")


class ValueSettings(BaseModel):
    """The long-term value head (``LONGVIEW_VALUE__RETURN_DAYS=14`` and so on): after a visit, will
    the user return within ``return_days``, and when. It shares the sequence model's encoder and
    trains with it (multi-task); it is off where the data has no real time."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="train the value head where the data has real times")
    return_days: float = Field(default=7.0, gt=0, le=365, description="H: return within this many days")
    # Time to return is modelled up to this many days (a discrete-time hazard over bins); longer gaps
    # count as "not back by then" (censored). Instacart caps its gaps at 30 days, so 30 loses nothing there.
    horizon_days: float = Field(default=30.0, gt=0, le=3650, description="time to return is modelled up to here")
    # The head's survival loss is added to the next-item cross-entropy with this weight.
    loss_weight: float = Field(default=0.5, gt=0, le=100)
    # Then the head alone is fitted on the trained encoder's states at every visit (full batch).
    head_steps: int = Field(default=1000, ge=0, le=100_000, description="full-batch steps fitting the head")
    head_learning_rate: float = Field(default=3e-3, gt=0)
    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000, description="resamples of users for intervals")

    @model_validator(mode="after")
    def _within_horizon(self) -> "ValueSettings":
        if self.return_days > self.horizon_days:
            raise ValueError(f"return_days ({self.return_days}) must not exceed horizon_days ({self.horizon_days})")
        return self


class EngagementSettings(BaseModel):
    """The engagement-aware ranking policy (training/models/engagement.py), every weight in one place
    (``LONGVIEW_ENGAGEMENT__DIVERSITY_WEIGHT=0.5`` and so on). The weights add to the sequence
    model's log-probabilities (nats): they are parameters, to be tuned against simulated retention."""

    model_config = ConfigDict(extra="forbid")

    value_weight: float = Field(default=3.0, ge=0, le=100, description="w: weight of P(return within H)")
    diversity_weight: float = Field(default=0.3, ge=0, le=100, description="MMR: penalty per unit of cosine similarity")
    novelty_weight: float = Field(default=0.05, ge=0, le=10, description="bonus per bit of self-information")
    exploration: float = Field(default=0.02, ge=0, le=0.5, description="share of slots explored (logged propensities)")
    candidates: int = Field(default=30, ge=1, le=1000, description="most relevant items the policy re-ranks")
    seed: int | None = Field(default=None, description="the exploration's random seed (default: the global seed)")
    # A version's own weights, chosen by `longview tune engagement` (its `engagement_weights` tag),
    # take the place of the three weights above where it has them (training/served_policy.py).
    use_tuned: bool = True

    def weights(self, default_seed: int) -> dict:
        return {**self.model_dump(exclude={"seed", "use_tuned"}),
                "seed": default_seed if self.seed is None else self.seed}


class GateSettings(BaseModel):
    """The promotion gate's rules (gate/promotion.py), each named in its verdicts and the audit
    log (``LONGVIEW_GATE__ACCURACY_TOLERANCE=0.01`` and so on)."""

    model_config = ConfigDict(extra="forbid")

    # not_worse_than_champion: the challenger's holdout NDCG@10 may be this much below the champion's.
    # None: measured on the holdout, as the half-width of the 95% paired bootstrap interval of the
    # difference over its users (the noise a tie is made of); the verdict reports the value used.
    accuracy_tolerance: float | None = Field(default=None, ge=0.0, le=1.0)
    # value_head_not_worse: the challenger's return AUC may be this much below the champion's (None:
    # measured, as for accuracy).
    value_auc_tolerance: float | None = Field(default=None, ge=0.0, le=1.0)
    # not_worse_than_best_baseline: refused if worse than the best baseline beyond the paired noise.
    # And where `longview train`'s model is so, it registers that baseline as @challenger instead.
    prefer_better_baseline: bool = Field(default=True, description="register a better baseline instead of the model")
    # How far below the best baseline the upper end of that interval may lie (0: not at all).
    baseline_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)
    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000, description="resamples of holdout users")
    # scoring_latency: the 95th percentile of one user's request to the packaged model, in ms.
    latency_budget_ms: float = Field(default=500.0, gt=0)
    latency_requests: int = Field(default=30, ge=5, le=10_000, description="single-user requests timed")
    # simulated_retention_not_worse (gate/retention.py): the retention of simulated users (the frozen
    # user model) served by the challenger and by the champion as each is served, the same users
    # and seeds for both. The tolerance, None: measured, as the half-width of the 95% interval of the
    # paired difference over those users and seeds (the seed noise of a tie).
    simulated_retention: bool = Field(default=True, description="judge simulated retention at all")
    retention_days: int = Field(default=14, ge=1, le=90, description="retention measured at this day")
    retention_users: int = Field(default=200, ge=10, le=100_000, description="simulated users")
    retention_seeds: int = Field(default=2, ge=1, le=20, description="simulations per model, fixed seeds")
    retention_tolerance: float | None = Field(default=None, ge=0.0, le=1.0)


class ServingSettings(BaseModel):
    """The BentoML service (serving/service.py): ``LONGVIEW_SERVING__POLL_SECONDS=1`` and so on."""

    model_config = ConfigDict(extra="forbid")

    # "engagement": a registered sequence model serves through the engagement-aware policy (the
    # `engagement` section's weights, read at load); "model": the registered model's own ranking.
    policy: Literal["engagement", "model"] = "engagement"
    # How often the service asks the registry where @champion points; a move is loaded in the
    # background and swapped in between requests.
    poll_seconds: float = Field(default=2.0, gt=0, le=5)
    max_k: int = Field(default=100, ge=1, le=10_000, description="the most items one request may ask for")
    max_batch: int = Field(default=1000, ge=1, le=100_000, description="the most users one /recommend_batch may ask for")
    max_body_bytes: int = Field(default=65_536, ge=1024, le=64 * 2**20, description="larger request bodies get 413")
    # Threads torch uses per worker. A request scores one user (small matrices): a second thread
    # only adds OpenMP hand-offs, and spins against the server's own threads on a small machine.
    torch_threads: int = Field(default=1, ge=1, le=256)
    # Seconds a loaded version may spend encoding the most recently active users' histories (the
    # feature tables' user_history) into the model's per-user state cache before their requests
    # come: the first version before the service reports ready, a new champion just after its swap
    # (0: none; users not reached are encoded at their first request, as a user with new events is).
    warm_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Serve an int8 dynamically quantised copy of the model's linear layers (training/models/quantize.py;
    # its latency and NDCG cost: `longview bench quantization`).
    quantize: bool = False
    # /search: the share of a blended score that is the user's preference (the rest is the query's
    # cosine). This text model's cosines for matching and unrelated texts lie about 0.3 apart, so at
    # 0.2 a user's taste reorders items that match about equally well without lifting non-matches.
    search_blend: float = Field(default=0.2, ge=0, le=1)
    # With a key, every POST must carry it in X-API-Key (401 otherwise); health, readiness and
    # metrics stay open. Set it from a secret store: LONGVIEW_SERVING__API_KEY.
    api_key: SecretStr | None = Field(default=None, min_length=16)


class ServedLogSettings(BaseModel):
    """The service's own log of every slate it serves (longview/served_log.py), what off-policy
    estimates read (``LONGVIEW_SERVED_LOG__COMMIT_MS=50`` and so on)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Records are queued in memory and written, flushed and fsync'd by one background thread at
    # most this often: a crash loses at most this window of records, and a request never waits on a disk.
    commit_ms: int = Field(default=100, ge=1, le=100, description="group-commit interval: the most a crash loses")
    # The open file is closed (renamed for ingestion) once it is this big or this old.
    file_bytes: int = Field(default=8 * 2**20, ge=4096, le=2**30, description="rotate the open file at this size")
    rotate_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400, description="rotate the open file this often")
    # Closed files wait for `longview ingest`; beyond this total the oldest are dropped (counted, warned).
    max_bytes: int = Field(default=512 * 2**20, ge=8192, le=2**40, description="closed files kept before ingestion")


class SimulationSettings(BaseModel):
    """`longview simulate` (control/simulation.py): ``LONGVIEW_SIMULATION__DAYS=14`` and so on."""

    model_config = ConfigDict(extra="forbid")

    # The frozen user model (default: training/simulation/calibrated/ml-100k.json, committed).
    user_model: Path | None = None
    days: int = Field(default=30, ge=1, le=365, description="simulated days")
    seeds: int = Field(default=3, ge=1, le=100, description="runs per policy, each with its own seed")
    users: int = Field(default=300, ge=1, le=1_000_000, description="simulated users (real users' tastes)")


class StackSettings(BaseModel):
    """`longview up`: the local stack's ports, all on 127.0.0.1 (``LONGVIEW_STACK__AIRFLOW_PORT=8081``)."""

    model_config = ConfigDict(extra="forbid")

    airflow_port: int = Field(default=8080, ge=1, le=65535, description="the Airflow UI and REST API")
    mlflow_port: int = Field(default=5000, ge=1, le=65535, description="the MLflow UI")
    feast_port: int = Field(default=8888, ge=1, le=65535, description="the Feast UI")
    service_port: int = Field(default=3000, ge=1, le=65535, description="the BentoML service")
    # Airflow's LocalExecutor: task processes at once. Each loads torch, pandas and Feast; on two
    # cores a third would only slow the other two.
    parallelism: int = Field(default=2, ge=1, le=64)
    start_seconds: float = Field(default=240.0, gt=0, le=3600, description="`up` gives up after this long")
    # Import the tasks' libraries once in the scheduler, which the LocalExecutor forks task processes
    # from (control/airflow_scheduler.py), instead of in every task.
    preload: bool = True


class MonitorSettings(BaseModel):
    """The daily monitor (control/monitoring.py): ``LONGVIEW_MONITOR__PSI_ALARM=0.2`` and so on."""

    model_config = ConfigDict(extra="forbid")

    recent_days: float = Field(default=7.0, gt=0, le=365, description="the recent window, before the dataset clock")
    # PSI's usual reading: under 0.1 stable, 0.1-0.25 a moderate shift, 0.25 and over a significant one.
    psi_alarm: float = Field(default=0.25, gt=0, le=10, description="a feature's PSI from here up raises the alarm")
    bins: int = Field(default=10, ge=2, le=100, description="quantile bins of the reference (ties merge bins)")
    min_rows: int = Field(default=50, ge=1, le=10_000_000, description="fewer values on either side: not compared")
    fallback_alarm: float = Field(default=0.5, gt=0, le=1, description="share of /recommend answers that fell "
                                                                          "back from which the alarm is raised")
    # A handful of requests (a smoke test, a new user's first call) says nothing about a share.
    min_requests: int = Field(default=20, ge=1, description="fewer /recommend requests: the share is not alarmed on")
    timeout_seconds: float = Field(default=3.0, gt=0, le=60, description="for reading the service's /metrics")
