"""A load test to point at a running (deployed) recommender service: Locust 2.x.

    locust -f serving/locustfile.py --headless -u 16 -r 16 -t 60s --host http://127.0.0.1:3000

16 simulated users, each sending its next request as soon as the last is answered (16 in flight,
no think time): mostly ``POST /recommend``, now and then ``POST /recommend_batch`` (10 users) and
``POST /similar_items`` (for an item the service recommended to that user, so it is in the served
model's catalogue). Any answer outside 2xx is a failure, and locust then exits with code 1. Without
``--headless`` it opens its web UI on http://127.0.0.1:8089.

Options of this file (each also read from an environment variable):
- ``--user-ids`` (``LONGVIEW_LOAD_USER_IDS``): the user ids to draw from, comma-separated, or
  ``@path`` to a file with one id a line; default ``u0001`` to ``u0150``, ids of the synthetic world.
- ``--api-key`` (``LONGVIEW_API_KEY``): sent as ``X-API-Key`` when the service requires a key.

The service's memory is not measured here: watch its processes (tests/serving/test_load.py runs
this file against a service and checks zero failures and that its memory stays flat).
"""

from __future__ import annotations

import random
from pathlib import Path

from locust import FastHttpUser, constant, events, task

DEFAULT_USERS = 150  # the synthetic world's ids: u0001, u0002, ... (longview/datasets/synthetic.py)
BATCH = 10


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--user-ids", type=str, env_var="LONGVIEW_LOAD_USER_IDS", default="",
                        help="user ids, comma-separated, or @file with one a line (default: u0001..u0150)")
    parser.add_argument("--api-key", type=str, env_var="LONGVIEW_API_KEY", default="", is_secret=True,
                        help="sent as X-API-Key (when the service is configured with a key)")


def user_ids(option: str) -> list[str]:
    if not option:
        return [f"u{n:04d}" for n in range(1, DEFAULT_USERS + 1)]
    if option.startswith("@"):
        ids = Path(option[1:]).read_text().split()
    else:
        ids = [i.strip() for i in option.split(",") if i.strip()]
    if not ids:
        raise ValueError(f"--user-ids {option!r} names no user id")
    return ids


class ServiceUser(FastHttpUser):
    wait_time = constant(0)  # closed loop: the next request as soon as the last is answered

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.users = user_ids(options.user_ids if options else "")
        key = options.api_key if options else ""
        self.headers = {"X-API-Key": key} if key else {}
        self.seen_items: list[str] = []

    def post(self, path: str, body: dict) -> dict | None:
        with self.client.post(path, json=body, headers=self.headers, catch_response=True) as response:
            if not 200 <= response.status_code < 300:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            response.success()
            return response.json()

    @task(10)
    def recommend(self) -> None:
        answer = self.post("/recommend", {"user_id": random.choice(self.users), "k": 10})
        if answer:
            self.seen_items = [item["item_id"] for item in answer["items"]] or self.seen_items

    @task(1)
    def recommend_batch(self) -> None:
        self.post("/recommend_batch", {"user_ids": random.sample(self.users, min(BATCH, len(self.users))), "k": 10})

    @task(2)
    def similar_items(self) -> None:
        if not self.seen_items:  # nothing recommended to this user yet: a recommendation first
            return self.recommend()
        self.post("/similar_items", {"item_id": random.choice(self.seen_items), "k": 10})
