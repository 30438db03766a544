"""Following @champion: the service serves whatever version the registry's alias points at.

A background thread asks the registry every ``serving.poll_seconds``. When the alias has moved (the
gate, `longview promote --rollback`, or a person in the MLflow UI) it loads the new version there,
off the request path, and swaps it in with one reference assignment: a request reads ``current``
once and ranks with that snapshot, so none is dropped or sees half a swap. Until a version has
loaded, ``problem`` says why nothing is served; if the registry stops answering, the last loaded
version keeps serving and ``registry_problem`` says so.

Items the version was not trained on (added to the catalogue since) are taken in by their content
where the model scores content (the sequence model fuses genres and text), so a new item can be
recommended before the next training. When `longview features` rewrites the feature tables, the
version is loaded again in the background to take in what is new."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from longview.features import FEATURE_SERVICE, HISTORY_VIEW, MANIFEST
from longview.settings import REGISTERED_MODEL, Settings
from training.served_policy import as_served
from training.tracking import CHAMPION, load_version

log = logging.getLogger(__name__)

# The registry's answers that mean "no such alias or model", as opposed to "not reachable".
_ABSENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


@dataclass(frozen=True)
class Served:
    """One loaded version, as requests see it."""

    version: str
    model: object  # the PackagedModel, under the serving policy
    model_name: str  # the registered model (its `model` tag): sequence, or a baseline in its place
    policy: str
    feature_service: str
    data_version: str
    new_items: int = 0  # catalogue items unseen at training, ranked by their content


class ChampionFollower:
    def __init__(self, settings: Settings, load: Callable[[Settings, str], object] = load_version) -> None:
        self.settings, self._load = settings, load
        self.current: Served | None = None
        self.problem: str | None = "the registry has not been asked yet"
        self.registry_problem: str | None = None
        self._failed: str | None = None  # a version that did not load: not retried until the alias moves
        self._client = None  # made once: a poll is one registry query, not a set-up of the tracking store
        self._features_stamp: int | None = None  # the feature tables the current version took new items from
        self._checking = threading.Lock()  # the poll thread and an admin reload never load at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="champion-follower", daemon=True)

    def start(self) -> None:
        self.check()  # the first answer before the server takes requests
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        while not self._stop.wait(self.settings.serving.poll_seconds):
            try:
                self.check()
            except Exception:  # never let the follower die: the next poll tries again
                log.exception("following @champion failed")

    def check(self, force: bool = False) -> None:
        """Ask the registry once; load and swap in a moved champion (``force``: load it again even
        if it has not moved, and retry a version that failed to load)."""
        with self._checking:
            if force:
                self._features_stamp, self._failed = None, None
            self._check()

    def _check(self) -> None:
        try:
            if self._client is None:
                from mlflow import MlflowClient

                uri = self.settings.tracking_uri
                self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client = self._client
            version = _champion(client)
        except Exception as exc:
            message = f"the model registry is unreachable: {type(exc).__name__}: {_first_line(exc)}"
            if message != self.registry_problem:
                log.error("%s (serving version %s)", message, self.current.version if self.current else "none")
            self.registry_problem = message
            if self.current is None:
                self.problem = message
            return
        self.registry_problem = None
        if version is None:
            if self.current is None:
                self.problem = (f"no @{CHAMPION} model in the registry: run `longview train` and "
                                f"`longview promote` (or `longview demo`)")
            return
        number = str(version.version)
        stamp = _features_stamp(self.settings)
        if (self.current is not None and self.current.version == number and stamp == self._features_stamp) \
                or number == self._failed:
            return
        started = time.monotonic()
        try:
            served = self._served(client, version)
        except Exception as exc:
            self._failed = number
            message = f"@{CHAMPION} version {number} does not load: {_first_line(exc)}"
            log.error("%s; %s", message, f"still serving version {self.current.version}" if self.current else "")
            if self.current is None:
                self.problem = message
            return
        if self.current is None:  # nothing served yet: not ready until the states are warm
            self._warm(served)
        previous, self.current, self.problem, self._failed = self.current, served, None, None
        self._features_stamp = stamp
        log.info("serving %s version %s (%s), loaded in %.1f s%s%s", REGISTERED_MODEL, number, served.policy,
                 time.monotonic() - started, f"; was version {previous.version}" if previous else "",
                 f"; {served.new_items} items new since training taken in by content" if served.new_items else "")
        if previous is not None:  # a swap: the new version serves at once, and warms up behind it
            threading.Thread(target=self._warm, args=(served,), name="state-warmup", daemon=True).start()

    def _warm(self, served: Served) -> None:
        """Encode the most recently active users' states into ``served``'s cache for at most
        ``serving.warm_seconds`` (stopping early once it is no longer the version swapped in, or the
        follower stops)."""
        budget = self.settings.serving.warm_seconds
        if budget <= 0:
            return
        started = time.monotonic()
        swapped = self.current is not None  # called after the swap: stop once another version replaces it

        def stop() -> bool:
            return (self._stop.is_set() or time.monotonic() - started > budget
                    or (swapped and self.current is not served))
        try:
            warmed = warm_user_states(self.settings, served.model, stop)
        except Exception as exc:  # a cold cache only costs each user's first request
            log.warning("user states not warmed: %s", _first_line(exc))
            return
        if warmed:
            log.info("version %s: %d users' states encoded ahead of their requests in %.1f s", served.version,
                     warmed, time.monotonic() - started)

    def _served(self, client, version) -> Served:
        packaged = self._load(self.settings, str(version.version))
        packaged = as_served(self.settings, packaged, dict(version.tags))
        if self.settings.serving.quantize:  # int8 linear layers (training/models/quantize.py)
            from training.models.quantize import quantized

            packaged = quantized(packaged)
        tags = client.get_run(version.run_id).data.tags if version.run_id else {}
        model_name = version.tags.get("model", packaged.model_name)
        try:
            new_items = take_in_new_items(self.settings, packaged)
        except Exception as exc:  # the version still serves what it was trained on
            log.warning("items new since training not taken in: %s", _first_line(exc))
            new_items = 0
        return Served(str(version.version), packaged, model_name, packaged.model_name,
                      version.tags.get("feature_service") or tags.get("feature_service") or FEATURE_SERVICE,
                      tags.get("data_version", "unknown"), new_items)


def _features_stamp(settings: Settings) -> int | None:
    """When the feature tables were last written (None: never)."""
    try:
        return (settings.features_dir / MANIFEST).stat().st_mtime_ns
    except OSError:
        return None


def warm_user_states(settings: Settings, packaged, stop: Callable[[], bool]) -> int:
    """``packaged.warm`` over the users of the feature tables' history view (what materialisation
    wrote online, so the histories requests will read), the most recently active last."""
    path = settings.features_dir / f"{HISTORY_VIEW}.parquet"
    if not hasattr(packaged, "warm") or not path.exists():
        return 0
    import pandas as pd

    frame = pd.read_parquet(path, columns=["event_timestamp", "history"])
    return packaged.warm(frame.sort_values("event_timestamp", kind="stable")["history"].tolist(), stop)


def take_in_new_items(settings: Settings, packaged) -> int:
    """Make the catalogue's items that ``packaged`` was not trained on rankable by their content
    (the catalogue's genres and the text embedding of the feature tables, the sources of Feast's
    content features), where the model scores content; an item whose text is not embedded yet
    waits for the next `longview features`. Returns how many it took in."""
    if not hasattr(packaged, "add_items"):
        return 0
    import pandas as pd

    from longview.features import TEXT_VIEW, read_manifest
    from longview.store import load_catalogue
    from training.content import content_matrix

    catalogue = load_catalogue(settings)
    new = [item for item in catalogue["item_id"] if item not in packaged.index]
    if not new:
        return 0
    frame = catalogue[["item_id", "genres"]]
    if read_manifest(settings.features_dir).get("text_embedding"):
        texts = pd.read_parquet(settings.features_dir / f"{TEXT_VIEW}.parquet", columns=["item_id", "text_embedding"])
        frame = frame.merge(texts.drop_duplicates("item_id", keep="last"), on="item_id", how="left")
        new = [item for item in new if item in set(texts["item_id"])]
    ids = list(packaged.item_ids) + new
    vectors = content_matrix(frame, ids).vectors
    if vectors is None or not new:
        return 0
    return len(packaged.add_items(ids, vectors[1:]))


def _champion(client):
    """The version @champion points at, None when there is none; raises when the registry does not answer."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in _ABSENT:
            return None
        raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
