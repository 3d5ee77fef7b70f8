"""The baseline a Python team would otherwise pick for durable webhook delivery: a Celery task
that POSTs with `requests`, retrying transport errors and 429/5xx answers.

Started by `benchmarks/stores.py` as `celery -A _celery_app worker --pool prefork
--concurrency 2`. The broker is the shared Redis on 127.0.0.1:6379 under a key prefix of this
run's own (`BENCH_CELERY_PREFIX`, kombu's `global_keyprefix`), so nothing else on the server
is touched and the run deletes exactly its own keys afterwards. Benchmark-only: Celery and
requests are in the `bench` extra, never the library's dependencies.
"""

from __future__ import annotations

import os

import requests
from celery import Celery
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_CELERY_PREFIX", "bench:celery:")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "webhooks")

app = Celery("bench_webhooks", broker=BROKER)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX},
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_ignore_result=True,
    # Acknowledged after the POST, as a durable sender must (a worker killed mid-task leaves
    # the task to another), like the library's stores.
    task_acks_late=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
)

_session: requests.Session | None = None


def session() -> requests.Session:
    """One keep-alive session per worker process, retrying as a careful team would."""
    global _session
    if _session is None:
        retry = Retry(
            total=5,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # POST included: receivers de-duplicate on the event id
            respect_retry_after_header=True,
        )
        _session = requests.Session()
        _session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=4))
        _session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=4))
    return _session


@app.task(
    name="bench.deliver",
    autoretry_for=(requests.RequestException,),
    retry_backoff=True,
    max_retries=5,
)
def deliver(url: str, body: str, headers: dict[str, str]) -> None:
    answer = session().post(url, data=body.encode(), headers=headers, timeout=10)
    answer.raise_for_status()
