"""How fast real Celery and kombu publish tasks on a broker: the peers taskbench's benchmarks compare against.

Usage: python bench/celery_peer.py BROKER_URL N

Run it with a Python that has Celery installed (tests/run creates target/celery-venv). BROKER_URL is any URL
kombu accepts (amqp://guest:guest@127.0.0.1:5672//, redis://127.0.0.1:6379/0). Three code paths run one
after the other, each in a loop on this one thread:

  celery-send_task        app.send_task("tasks.add", args=(2, 2)): what task.delay() runs underneath, with
                          Celery's default configuration (a producer checked out of kombu's pool per call,
                          publish with retry, release). A real protocol-v2 task message. N publishes.
  kombu-pooled-producer   one kombu Producer on one connection kept open for the whole loop; each publish
                          sends the JSON body [[2, 2], {}, {}] (no Celery headers) to the queue's exchange.
                          N publishes.
  kombu-fresh-connection  a new kombu Connection per publish (connect, channel, publish, close), the same
                          body, no declare. N // 10 publishes (at least 1), because each costs milliseconds.

Every path first makes min(PEER_WARMUP, N) untimed calls. stdout gets exactly one JSON line per path, in
that order, and nothing else (notes go to stderr), for bench/amqp.sh and bench/redis.sh to parse:

  {"path": "celery-send_task", "n": 5000, "per_s": 1776, "p50_us": 540, "p99_us": 1496, "max_us": 5719}

per_s is N over the wall time of the timed loop; p50_us, p99_us and max_us are one call's latency in
microseconds (pXX is the sorted sample at index int(count * XX / 100)).

The tasks go to their own queue, never `celery`: Celery's default queue, exchange and routing key, renamed
(task_default_queue). At the end the script deletes what it created: on RabbitMQ the queue and its exchange,
on Redis kombu's four priority lists and the two binding sets. It leaves a queue alone that existed before it
started (and says so on stderr), and everything when PEER_KEEP=1.

Environment:
  PEER_QUEUE   the queue (and exchange and routing key) to publish to; default taskbench-peer-<pid>
  PEER_WARMUP  untimed calls before each path's loop; default 200
  PEER_KEEP    1: leave the queue, exchange and published messages on the broker
"""

import json
import os
import sys
import time

from celery import Celery
from kombu import Connection, Exchange, Producer, Queue

KOMBU_BODY = [[2, 2], {}, {}]
# kombu's Redis transport: the separator between a queue's name and its priority step, and the steps.
REDIS_SEP = "\x06\x16"
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)


def note(text):
    print(f"celery_peer: {text}", file=sys.stderr, flush=True)


def percentile(sorted_samples, fraction):
    return sorted_samples[min(len(sorted_samples) - 1, int(len(sorted_samples) * fraction))]


def measure(path, publish, count, warmup):
    """Calls `publish` `count` times (after `warmup` untimed calls) and prints the path's JSON line."""
    for _ in range(min(warmup, count)):
        publish()
    latencies_us = []
    clock = time.perf_counter
    started = clock()
    for _ in range(count):
        t0 = clock()
        publish()
        latencies_us.append((clock() - t0) * 1e6)
    elapsed = clock() - started
    latencies_us.sort()
    line = {
        "path": path,
        "n": count,
        "per_s": round(count / elapsed),
        "p50_us": round(percentile(latencies_us, 0.50)),
        "p99_us": round(percentile(latencies_us, 0.99)),
        "max_us": round(latencies_us[-1]),
    }
    print(json.dumps(line), flush=True)


def redis_keys(queue):
    lists = [queue if step == 0 else f"{queue}{REDIS_SEP}{step}" for step in REDIS_PRIORITY_STEPS]
    return lists + [f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]


def queue_exists(url, queue):
    """Whether `queue` is already on the broker (then it is not ours to delete)."""
    with Connection(url) as conn:
        if conn.transport.driver_type == "redis":
            return conn.default_channel.client.exists(*redis_keys(queue)) > 0
        channel = conn.channel()
        try:
            channel.queue_declare(queue, passive=True)
            return True
        except conn.channel_errors:  # 404 NOT_FOUND, which also closes this channel
            return False


def delete_queue(url, queue):
    """Deletes the queue and what Celery and kombu declared with it."""
    with Connection(url) as conn:
        if conn.transport.driver_type == "redis":
            conn.default_channel.client.delete(*redis_keys(queue))
        else:
            channel = conn.channel()
            channel.queue_delete(queue)
            channel.exchange_delete(queue)


def main(argv):
    if len(argv) != 3 or not argv[2].isdigit() or int(argv[2]) < 1:
        print("usage: python bench/celery_peer.py BROKER_URL N   (N >= 1 publishes per path)", file=sys.stderr)
        return 2
    url, count = argv[1], int(argv[2])
    queue = os.environ.get("PEER_QUEUE") or f"taskbench-peer-{os.getpid()}"
    warmup = int(os.environ.get("PEER_WARMUP", "200"))
    keep = os.environ.get("PEER_KEEP") == "1"
    existed = queue_exists(url, queue)
    note(f"publishing to queue {queue!r}" + (" (it existed before)" if existed else ""))

    app = Celery("celery_peer", broker=url)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.task_default_queue = queue
    try:
        measure("celery-send_task", lambda: app.send_task("tasks.add", args=(2, 2)), count, warmup)

        exchange = Exchange(queue, type="direct")
        kept = Connection(url)
        kept.connect()
        producer = Producer(kept.channel())
        # Declares what Celery declares for the queue, so the loop publishes to an existing exchange.
        producer.publish(KOMBU_BODY, exchange=exchange, routing_key=queue,
                         declare=[Queue(queue, exchange, routing_key=queue)])
        measure("kombu-pooled-producer",
                lambda: producer.publish(KOMBU_BODY, exchange=queue, routing_key=queue), count, warmup)
        kept.release()

        def publish_on_a_new_connection():
            with Connection(url) as conn:
                Producer(conn.channel()).publish(KOMBU_BODY, exchange=queue, routing_key=queue)

        measure("kombu-fresh-connection", publish_on_a_new_connection, max(1, count // 10), warmup)
    finally:
        app.close()
        if keep:
            note(f"PEER_KEEP=1: left queue {queue!r} and its messages on the broker")
        elif existed:
            note(f"queue {queue!r} existed before this run: left it, with the messages this run added")
        else:
            delete_queue(url, queue)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
