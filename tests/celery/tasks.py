"""Tasks for the worker tests: each execution is recorded in Redis, so a test can check that a real Celery
worker ran every task taskbench published, with the right arguments.

The record list is `taskbench-executed:<queue>`; each item is JSON {"id", "task", "args", "kwargs"}.
Redis for records: TASKBENCH_RECORD_REDIS (default redis://127.0.0.1:6379/0).
"""
import json
import os

import redis
from celery import Celery

app = Celery("taskbench_tests")
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False
_records = redis.Redis.from_url(os.environ.get("TASKBENCH_RECORD_REDIS", "redis://127.0.0.1:6379/0"))


def _record(task, args, kwargs):
    queue = task.request.delivery_info.get("routing_key") or "unknown"
    _records.rpush(
        f"taskbench-executed:{queue}",
        json.dumps({"id": task.request.id, "task": task.name, "args": list(args), "kwargs": kwargs}),
    )


@app.task(bind=True, name="tasks.add")
def add(self, x, y, *pad, **kwargs):
    _record(self, (x, y) + pad, kwargs)
    return x + y
