"""taskbench's Python harness: real Celery or kombu publishing the scenario's task, one process per publisher.

taskbench ships this file inside its binary (src/backend/python/harness.py), writes it to a temporary file
and runs it as `python -u harness.py`. It talks to its one publisher on a channel of its own, one line per
message: commands in on descriptor 3, answers out on descriptor 4 (docs/python-clients.md has the whole
protocol). stdin is empty, and stdout and stderr are the app's: taskbench keeps them in a log file, so an app
that prints cannot break the protocol.

  taskbench -> harness   line 1: the case as JSON; then per publish "p" (a closed loop keeps several
                         queued ahead); at the end "q"
  harness -> taskbench   "r {json}" ready (versions, which functions time which stage)
                         "f {json}" failed to start (kind, message), then exit status 3
                         "o LATENCY_NS [STAGE=NS ...]" one publish done, per publish, in order
                         (written in batches while commands wait, at least every 8 ms)
                         "e KIND MESSAGE" one publish failed
                         "s {json}" after "q": counters, then exit status 0

`python harness.py --overhead` measures what recording a publish and timing a stage cost here, without a
broker, and prints one JSON line.
"""

import functools
import json
import os
import select
import sys
import time
import uuid
import weakref

perf_ns = time.perf_counter_ns
# The channel to taskbench (set up by src/backend/python/harness.rs): commands in, answers out.
COMMANDS = 3
ANSWERS = 4
# A blocking pipe takes a whole line in one write.
write = os.write
# At most this long between two writes of answers while publishing without a pause (see serve).
FLUSH_NS = 8_000_000


def flush(out):
    """Writes the answers in `out` (a blocking pipe takes them whole, unless a signal cut the write short)."""
    data = b"".join(out)
    out.clear()
    while data:
        data = data[write(ANSWERS, data):]

# --- stages: Celery's and kombu's own functions, wrapped so their time is charged to a stage -------------

# (stage, module, class, attribute); class None: a module's function, wrapped where the module looks it up.
# Applied where the installed version has them; the ready line says which were wrapped. Stages are
# exclusive: a wrapped function called inside another (a connection checked out of the pool while a producer
# is) is charged to its own stage and taken out of the caller's, so the outermost ones (`options`: Celery's
# apply_async, kombu's Producer.publish) keep their own code and the unwrapped functions they call.
# docs/python-clients.md has the mapping per version.
# `tls` is the TLS handshake inside a connect (amqps://: py-amqp wraps and handshakes; rediss://: redis-py
# wraps).
STAGE_FUNCTIONS = [
    ("options", "celery.app.task", "Task", "apply_async"),
    ("options", "kombu.messaging", "Producer", "publish"),
    ("route", "celery.app.routes", "Router", "route"),
    ("acquire", "kombu.resource", "Resource", "acquire"),
    ("connect", "kombu.connection", "Connection", "__init__"),
    ("connect", "kombu.connection", "Connection", "_establish_connection"),
    ("tls", "amqp.transport", "SSLTransport", "_setup_transport"),
    ("tls", "redis.connection", "SSLConnection", "_wrap_socket_with_ssl"),
    ("channel", "kombu.connection", "Connection", "channel"),
    ("encode", "celery.app.base", None, "uuid"),
    ("encode", "celery.app.amqp", "AMQP", "as_task_v2"),
    ("encode", "kombu.messaging", "Producer", "_prepare"),
    ("encode", "kombu.transport.virtual.base", "Channel", "prepare_message"),
    ("encode", "amqp.channel", "Channel", "prepare_message"),
    ("argsrepr", "celery.app.amqp", None, "saferepr"),
    ("signals", "celery.utils.dispatch.signal", "Signal", "send"),
    ("declare", "kombu.messaging", "Producer", "maybe_declare"),
    ("send", "kombu.transport.virtual.base", "Channel", "basic_publish"),
    ("send", "amqp.channel", "Channel", "_basic_publish"),
    ("confirm", "amqp.channel", "Channel", "basic_publish_confirm"),
    ("release", "kombu.resource", "Resource", "release"),
    ("release", "kombu.pools", "ProducerPool", "release"),
    ("close", "kombu.connection", "Connection", "_close"),
    ("result", "celery.result", "AsyncResult", "__init__"),
]

# The publish signals whose handlers run inside `signals` (Signal.send): the ready line names them.
PUBLISH_SIGNALS = ("before_task_publish", "after_task_publish", "task_sent")

# Per publish: nanoseconds by stage. `covered` is the time of the wrapped calls that have ended, each
# counted once at its own level: a wrapper takes what grew in it during its call (its nested wrapped calls)
# out of its own time, then sets it to what it was before plus its whole call.
acc = {}
covered = [0]
calls = [0]


def timed(stage, fn):
    get, clock = acc.get, perf_ns

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = covered[0]
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = clock() - t0
            acc[stage] = get(stage, 0) + elapsed - (covered[0] - before)
            covered[0] = before + elapsed
            calls[0] += 1

    wrapper.__taskbench_stage__ = stage
    return wrapper


def wrap_stages():
    """Wraps every function of STAGE_FUNCTIONS that exists; returns {stage: ["module.Class.attr", ...]}."""
    import importlib

    wrapped = {}
    for stage, module, cls, attr in STAGE_FUNCTIONS:
        try:
            owner = importlib.import_module(module)
            if cls is not None:
                owner = getattr(owner, cls)
        except (ImportError, AttributeError):
            continue
        fn = owner.__dict__.get(attr)
        if fn is None or hasattr(fn, "__taskbench_stage__"):
            continue
        setattr(owner, attr, timed(stage, fn))
        if (module, attr) == ("amqp.channel", "_basic_publish"):
            # py-amqp aliases basic_publish = _basic_publish at class creation: point the alias at the wrapper.
            owner.basic_publish = owner._basic_publish
        wrapped.setdefault(stage, []).append(f"{module}.{cls}.{attr}" if cls else f"{module}.{attr}")
    return wrapped


def signal_handlers():
    """The handlers connected to Celery's publish signals, as "signal: module.function" (their time is the
    `signals` stage's): read once the app is loaded, so that its own handlers are there."""
    try:
        from celery import signals
    except ImportError:
        return []
    out = []
    for name in PUBLISH_SIGNALS:
        for _, receiver in getattr(getattr(signals, name, None), "receivers", None) or []:
            fn = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
            if fn is not None:
                fn = getattr(fn, "__func__", fn)
                out.append(f"{name}: {getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}")
    return out


# --- errors -------------------------------------------------------------------------------------------

class ErrorKind:
    """The error kinds this harness reports: each is the name of one of taskbench's (src/error.rs).

    taskbench reads a name it does not know as `send` (or `setup`), so tests/harness_kinds.rs checks every
    name here against its list, and that the harness reports a kind only through this class.
    """

    UNREACHABLE = "unreachable"
    AUTH = "auth"
    VHOST = "vhost"
    DECLARE_CONFLICT = "declare_conflict"
    OOM = "oom"
    TIMEOUT = "timeout"
    CONNECTION_LOST = "connection_lost"
    SEND = "send"
    SETUP = "setup"
    TLS_CERTIFICATE = "tls_certificate"
    TLS_HANDSHAKE = "tls_handshake"


def kind_of(exc):
    """The taskbench error kind of an exception raised by a publish (its cause chain included)."""
    seen = set()
    e = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__
        text = str(e)
        if isinstance(e, ConnectionRefusedError) or "Connection refused" in text:
            return ErrorKind.UNREACHABLE
        if name in ("AccessRefused", "AuthenticationError", "AuthenticationWrongNumberOfArgsError") \
                or "WRONGPASS" in text or "NOAUTH" in text or "ACCESS_REFUSED" in text:
            return ErrorKind.AUTH
        if name == "NotAllowed" or "NOT_ALLOWED" in text:
            return ErrorKind.VHOST
        if name == "PreconditionFailed" or "PRECONDITION_FAILED" in text:
            return ErrorKind.DECLARE_CONFLICT
        if "OOM" in text:
            return ErrorKind.OOM
        if name == "SSLCertVerificationError" or "CERTIFICATE_VERIFY_FAILED" in text:
            return ErrorKind.TLS_CERTIFICATE
        if name in ("SSLError", "SSLEOFError", "SSLZeroReturnError") or ("SSL" in text and "handshake" in text):
            return ErrorKind.TLS_HANDSHAKE
        if isinstance(e, TimeoutError) or name in ("TimeoutError", "timeout"):
            return ErrorKind.TIMEOUT
        if isinstance(e, (ConnectionError, OSError)) or name in ("ConnectionError", "RecoverableConnectionError"):
            return ErrorKind.CONNECTION_LOST
        e = e.__cause__ or e.__context__
    return ErrorKind.SEND


def one_line(text, limit=600):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def fail(kind, message):
    write(ANSWERS, ("f " + json.dumps({"kind": kind, "message": one_line(message, 2000)}) + "\n").encode())
    sys.exit(3)


# --- the clients --------------------------------------------------------------------------------------

class AppError(Exception):
    """The user's app cannot be loaded: the whole story, and `why` (the exception, for taskbench's check)."""

    def __init__(self, message, why):
        super().__init__(message)
        self.why = why


def import_app(spec):
    """The user's Celery app (`spec` = "module:attr"), loaded as Celery's worker and CLI load it: the module
    imported, then the app's loader imports its `imports`, `include` and autodiscovered task modules, and the
    app is finalized, so its tasks, their base classes, its signal handlers and its routers are the real ones."""
    import importlib

    from celery import Celery

    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # the user's code: anything can happen on import
        why = f"{type(exc).__name__}: {exc}"
        raise AppError(f"celery_app {spec!r} could not be loaded: {why} (sys.path[0] = {sys.path[0]!r};"
                       f" set pythonpath to the directory {module.split('.')[0]} is in)", why) from exc
    if not isinstance(obj, Celery):
        why = f"{spec} is a {type(obj).__name__}, not a Celery app"
        raise AppError(f"celery_app {spec!r} is a {type(obj).__name__}, not a Celery app", why)
    try:
        # What `celery worker` (loader.init_worker) and `celery report`/`shell` do before using the app.
        obj.loader.import_default_modules()
        obj.finalize(auto=True)
    except Exception as exc:
        why = (f"its loader could not import its task modules (include, imports, autodiscover_tasks):"
               f" {type(exc).__name__}: {exc}")
        raise AppError(f"celery_app {spec!r}: {why}", why) from exc
    return obj


def user_tasks(app):
    """The app's own task names, sorted (Celery's built-in `celery.*` tasks left out)."""
    return sorted(name for name in app.tasks if not name.startswith("celery."))


def task_of(app, name):
    """The app's task `name`, or a stand-in registered under that name (so that apply_async runs as for a
    registered task, as `send_task` publishes a name the app does not have); and whether it was the app's."""
    task = app.tasks.get(name)
    if task is not None:
        return task, True

    @app.task(name=name, shared=False)
    def _taskbench_task(*a, **kw):
        return None

    return app.tasks[name], False


def routed_queue(app, task, args, kwargs):
    """The queue the app's own routing sends `task` to when apply_async is given no queue (the task's own
    `queue` option, then task_routes), as Celery's router computes it; None when nothing routes the task
    (it would go to the app's default queue)."""
    options = {k: v for k, v in task._get_exec_options().items() if v is not None}
    router = app.amqp.router
    routed = "queue" in options or "exchange" in options
    if not routed and router.routes:
        routed = bool(router.lookup_route(task.name, args, kwargs, dict(options), task))
    if not routed:
        return None
    out = router.route(options, task.name, args, kwargs, task)
    queue = out.get("queue")
    if queue is not None:
        return queue.name
    exchange = out.get("exchange")
    return out.get("routing_key") or getattr(exchange, "name", exchange)


def reroute(app, name, queue_name):
    """Publishes task `name` to taskbench's own queue `queue_name`: the app's router runs first, as in
    production (its cost is in the measured publish), then its destination (queue, exchange, routing key) is
    replaced by a direct queue of taskbench's, the kind Celery creates for a queue it does not know."""
    from kombu import Exchange, Queue

    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    router = app.amqp.router
    route = router.route

    def taskbench_reroute(options, task_name, *args, **kwargs):
        out = route(options, task_name, *args, **kwargs)
        if task_name == name:
            for key in ("exchange", "routing_key", "exchange_type"):
                out.pop(key, None)
            out["queue"] = queue
        return out

    router.route = taskbench_reroute


def tls_options(cfg):
    """The case's TLS keys as the client takes them, or None without TLS: for amqps:// py-amqp's `ssl` dict
    (what Celery documents for broker_use_ssl), for rediss:// redis-py's `ssl_*` options (kombu's)."""
    tls = cfg.get("tls")
    if not tls:
        return None
    import ssl
    from urllib.parse import urlsplit

    required = ssl.CERT_REQUIRED if tls["verify"] else ssl.CERT_NONE
    if urlsplit(cfg["url"]).scheme in ("rediss", "valkeys"):
        opts = {"ssl_cert_reqs": required}
        names = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
    else:
        # server_hostname turns on py-amqp's host name check (with verification), as taskbench checks it.
        host = urlsplit(cfg["url"]).hostname
        opts = {"cert_reqs": required, "server_hostname": host if tls["verify"] else None}
        names = ("ca_certs", "certfile", "keyfile")
    for name, value in zip(names, (tls["ca"], tls["cert"], tls["key"])):
        if value:
            opts[name] = value
    return opts


def named(cfg, options):
    """`options` (broker transport options) with the case's `connection_name` added to an AMQP connection's
    client properties, so that `kill-connections` finds the harness's connections as it finds taskbench's."""
    if not cfg.get("connection_name"):
        return options
    props = dict(options.get("client_properties") or {}, connection_name=cfg["connection_name"])
    return dict(options, client_properties=props)


def load_app(cfg):
    """The Celery app: the user's (celery_app = "module:attr"), or a minimal one; on the case's broker."""
    from celery import Celery

    spec = cfg.get("celery_app")
    if spec:
        try:
            app = import_app(spec)
        except AppError as exc:
            fail(ErrorKind.SETUP, str(exc))
    else:
        app = Celery("taskbench")
    # The case's broker, so that taskbench counts what arrived where it looks; everything else is the app's.
    app.conf.broker_url = cfg["url"]
    if tls_options(cfg) is not None:
        app.conf.broker_use_ssl = tls_options(cfg)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.broker_transport_options = named(cfg, dict(app.conf.broker_transport_options or {}))
    if not spec:
        app.conf.task_default_queue = cfg["queue"]
    if cfg["path"] == "fresh":
        app.conf.broker_pool_limit = 0
    return app


def celery_task(app, cfg):
    """The case's task on `app`, and the apply_async options that send it where taskbench counts: the app's
    routing runs as in production; a routed task goes to taskbench's own queue `cfg["queue"]` unless the case
    asked for the routed queue itself (`publish_to_routed_queue`); an unrouted one goes to `cfg["queue"]`."""
    name, args, kwargs = cfg["task"], cfg["args"], cfg["kwargs"]
    task, registered = task_of(app, name)
    if not registered and cfg.get("celery_app") and not cfg.get("unregistered_task"):
        fail(ErrorKind.SETUP, f"the app {cfg['celery_app']} has no task {name!r}; its tasks: "
                              f"{', '.join(user_tasks(app)) or '(none)'} (set unregistered_task = true to"
                              " publish it by name, as send_task does)")
    # taskbench asked the app where it routes the task before the run (`check_interpreters`): it planned its
    # queue and delivered count on that answer. Never asked (a library caller): ask here, and refuse a route.
    planned = cfg.get("route")
    routed = planned["routed_queue"] if planned is not None else routed_queue(app, task, args, kwargs)
    if planned is None and routed is not None:
        fail(ErrorKind.SETUP, f"the app routes {name} to queue {routed!r}, but taskbench did not ask it before"
                              " the case (backend::python::check_interpreters), so its queue was not planned")
    options = {}
    if routed is None:
        options["queue"] = cfg["queue"]
    elif not cfg.get("publish_to_routed_queue"):
        reroute(app, name, cfg["queue"])
    if cfg.get("priority"):
        options["priority"] = cfg["priority"]
    return task, options


def close_pooled(producer_pool):
    """Closes, with the broker's handshake, the connection of the producer a pool hands out (the harness
    publishes from one thread, so that is the one its publishes went through)."""
    with producer_pool.acquire(block=False) as producer:
        producer.connection.close()


def celery_publisher(cfg):
    app = load_app(cfg)
    task, options = celery_task(app, cfg)
    args, kwargs = cfg["args"], cfg["kwargs"]
    apply_async = task.apply_async
    # app.close() only drops the pool: the process would then exit with its connection open, and RabbitMQ
    # drops what it had not yet routed from a connection that vanishes (seen: 182 of 5,200 publishes under
    # load). So the connection the publishes used is closed with the AMQP handshake first.
    closing = [lambda: close_pooled(app.producer_pool), app.close]
    if cfg["path"] == "pooled":
        # The blog's attempted fix: one producer checked out once and handed to every apply_async.
        producer = app.producer_pool.acquire(block=True)
        options["producer"] = producer
        closing[0:1] = [producer.connection.close, producer.release]

    def publish():
        apply_async(args, kwargs, **options)

    return publish, closing


def kombu_publisher(cfg):
    import socket

    from kombu import Connection, Exchange, Producer, Queue
    from kombu.pools import producers

    url, queue, name = cfg["url"], cfg["queue"], cfg["task"]
    ssl = tls_options(cfg) or False
    opts = named(cfg, {})
    q = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
    args, kwargs = cfg["args"], cfg["kwargs"]
    body = (args, kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    origin = f"{os.getpid()}@{socket.gethostname()}"
    base = {
        "lang": "py", "task": name, "shadow": None, "eta": None, "expires": None, "group": None,
        "group_index": None, "retries": 0, "timelimit": [None, None], "parent_id": None,
        "argsrepr": repr(tuple(args)), "kwargsrepr": repr(kwargs), "origin": origin,
        "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    extra = {"priority": cfg["priority"]} if cfg.get("priority") else {}

    def task_message():
        """The fresh task id and the headers Celery would send with it: this publish's part of the message."""
        task_id = str(uuid.uuid4())
        return task_id, dict(base, id=task_id, root_id=task_id)

    if cfg.get("stage_timing", True):
        task_message = timed("encode", task_message)

    def send(producer):
        task_id, headers = task_message()
        producer.publish(body, exchange="", routing_key=queue, declare=[q], serializer="json",
                         headers=headers, correlation_id=task_id, delivery_mode=2, **extra)

    path = cfg["path"]
    if path == "fresh":
        def publish():
            with Connection(url, ssl=ssl, transport_options=opts) as conn:
                send(Producer(conn))

        return publish, []
    conn = Connection(url, ssl=ssl, transport_options=opts)
    if path == "acquire":
        pool = producers[conn]

        def publish():
            with pool.acquire(block=True) as producer:
                send(producer)

        # force_close_all drops the connections without the handshake (see celery_publisher).
        return publish, [lambda: close_pooled(pool), pool.force_close_all, conn.release]
    conn.connect()
    producer = Producer(conn.channel())

    def publish():
        send(producer)

    return publish, [conn.release]


# --- the loop -----------------------------------------------------------------------------------------

def serve(cfg, commands):
    if cfg.get("pythonpath"):
        sys.path.insert(0, cfg["pythonpath"])
    wrapped = wrap_stages() if cfg.get("stage_timing", True) else {}
    try:
        import celery
        import kombu
    except ImportError as exc:
        fail(ErrorKind.SETUP, f"{sys.executable} cannot import {exc.name}: install it with "
                      f"{sys.executable} -m pip install 'celery[redis]'")
    make = celery_publisher if cfg["client"] == "celery" else kombu_publisher
    try:
        publish, closing = make(cfg)
    except SystemExit:
        raise
    except Exception as exc:
        fail(kind_of(exc) if cfg["client"] == "kombu" else ErrorKind.SETUP, f"{type(exc).__name__}: {exc}")
    ready = {
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "stages": wrapped,
    }
    if "signals" in wrapped:
        wrapped["signals"] += signal_handlers()
    if cfg["client"] == "kombu" and wrapped:
        wrapped.setdefault("encode", []).append("taskbench_harness.kombu_publisher.<locals>.task_message")
    write(ANSWERS, ("r " + json.dumps(ready) + "\n").encode())

    # Answers go out in batches: writing one wakes taskbench (a pipe's wake-up is a sync one), which on a busy
    # machine takes the core from the harness for 20-200 µs, so pending answers are written once FLUSH_NS
    # passed since the last write, or when no command is waiting (never held while the harness waits).
    buf, at, out, flushed = commands.read1(65536), 0, [], perf_ns()
    os.set_blocking(COMMANDS, False)
    published = failed = busy_ns = 0
    stage_calls = 0
    first = last = 0
    while True:
        if out and last - flushed >= FLUSH_NS:
            flush(out)
            flushed = last
        if at >= len(buf):
            try:
                buf, at = os.read(COMMANDS, 65536), 0
            except BlockingIOError:
                flush(out)
                select.select([COMMANDS], [], [])
                continue
            if not buf:
                break
        command = buf[at:at + 2]
        at += 2
        if command != b"p\n":
            break
        if not first:
            first = perf_ns()
        acc.clear()
        calls[0] = 0
        t0 = perf_ns()
        try:
            publish()
        except Exception as exc:
            # A failed publish ends the span too: its time is in busy_ns, so the span must cover it (a span
            # that ended at the last success read 137% busy after the broker died).
            last = perf_ns()
            busy_ns += last - t0
            failed += 1
            out.append(f"e {kind_of(exc)} {type(exc).__name__}: {one_line(exc)}\n".encode())
            # Failing (a broker gone), each command may take long: if taskbench gave up on the ones queued
            # here and asked to quit, quit now rather than fail them all first.
            try:
                buf, at = buf[at:] + os.read(COMMANDS, 65536), 0
            except BlockingIOError:
                pass
            if b"q" in buf[at:]:
                break
            continue
        last = perf_ns()
        elapsed = last - t0
        busy_ns += elapsed
        published += 1
        stage_calls += calls[0]
        if acc:
            out.append(("o %d %s\n" % (elapsed, " ".join("%s=%d" % kv for kv in acc.items()))).encode())
        else:
            out.append(b"o %d\n" % elapsed)
    flush(out)
    for close in closing:
        try:
            close()
        except Exception:
            pass
    stats = {"published": published, "failed": failed, "busy_ns": busy_ns, "stage_calls": stage_calls,
             "span_ns": max(0, last - first)}
    write(ANSWERS, ("s " + json.dumps(stats) + "\n").encode())


def overhead():
    """What the harness adds to a publish, measured without a broker: recording (two clock reads, the
    answer line and its write to a pipe), and stage timing (per timed call, and the longer answer line)."""
    n = 50_000
    r, w = os.pipe()
    os.set_blocking(r, False)

    def drain():
        try:
            while os.read(r, 65536):
                pass
        except BlockingIOError:
            pass

    def noop():
        return None

    def bare_loop(fn):
        t = perf_ns()
        for _ in range(n):
            fn()
        return perf_ns() - t

    def recorded_loop(fn):
        t = perf_ns()
        for i in range(n):
            acc.clear()
            calls[0] = 0
            t0 = perf_ns()
            fn()
            elapsed = perf_ns() - t0
            if acc:
                os.write(w, ("o %d %s\n" % (elapsed, " ".join("%s=%d" % kv for kv in acc.items()))).encode())
            else:
                os.write(w, b"o %d\n" % elapsed)
            if i % 256 == 0:
                drain()
        return perf_ns() - t

    # As many timed calls as a Celery publish on the acquire path makes (its notes say how many timed calls
    # a publish made), over the stages it has.
    stages = ["options", "route", "encode", "argsrepr", "acquire", "signals", "declare", "send", "release", "result"]
    timed_fns = [timed(stages[i % len(stages)], noop) for i in range(TIMED_CALLS)]
    bare_fns = [noop] * TIMED_CALLS

    def all_timed():
        for f in timed_fns:
            f()

    def all_bare():
        for f in bare_fns:
            f()

    rounds = []
    for _ in range(5):
        bare = bare_loop(noop)
        recorded = recorded_loop(noop)
        plain = recorded_loop(all_bare)
        timed_all = recorded_loop(all_timed)
        rounds.append(((recorded - bare) / n, (timed_all - plain) / n))
    record_ns = sorted(x[0] for x in rounds)[2]
    stage_ns = sorted(x[1] for x in rounds)[2]
    print(json.dumps({"python": sys.version.split()[0], "publishes": n,
                      "record_ns_per_publish": round(record_ns), "timed_calls_per_publish": TIMED_CALLS,
                      "stage_timing_ns_per_publish": round(stage_ns),
                      "stage_timing_ns_per_timed_call": round(stage_ns / TIMED_CALLS)}))


# Timed calls per publish of Celery's `acquire` path (Celery 5.7: apply_async, the router, the task id,
# as_task_v2, two saferepr, the pool checkout and its connection's, the two publish signals, Producer.publish,
# _prepare, maybe_declare, prepare_message, _basic_publish, two releases and the AsyncResult).
TIMED_CALLS = 18


def probe(request):
    """`--probe`, taskbench's check before a run (src/backend/python/probe.rs): the interpreter's versions;
    with a `celery_app`, the app's tasks and, for each task asked about, whether the app has it and where its
    routing sends it; its resident memory once all that is loaded (`rss`, bytes). Prints one line,
    `taskbench-probe {json}`."""
    out = {"python": sys.version.split()[0], "executable": sys.executable}
    for name in ("celery", "kombu"):
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = None
    spec = request.get("celery_app")
    if spec and out["celery"]:
        if request.get("pythonpath"):
            sys.path.insert(0, request["pythonpath"])
        try:
            app = import_app(spec)
            out["tasks"] = user_tasks(app)
            out["routes"] = [probe_task(app, t) for t in request.get("tasks", [])]
            if request.get("describe"):
                out["app"] = describe_app(app)
        except AppError as exc:
            out["app_error"] = exc.why
    if out["celery"] and out["kombu"]:
        load_as_a_harness(own_app=not spec)
    out["rss"] = resident_bytes()
    # On a line of its own: the app may have printed without ending its line.
    sys.stdout.write("\ntaskbench-probe " + json.dumps(out) + "\n")


def load_as_a_harness(own_app):
    """Loads what a harness holds besides the user's app, so that the probe's size is a harness's: Celery's
    own app (`own_app`: the case has no celery_app) and the broker transports (redis-py alone is ~10 MB)."""
    try:
        if own_app:
            from celery import Celery

            Celery("taskbench")
        import kombu.transport.pyamqp  # noqa: F401
        import kombu.transport.redis  # noqa: F401
    except Exception:  # a transport's client library not installed: the probe says what is missing
        pass


def resident_bytes():
    """This process's resident memory now (VmRSS, Linux), in bytes; None where it cannot be read. The probe
    reports it once the app and the transports are loaded: about what each harness of a case holds."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe_app(app):
    """For `taskbench init`: the app's broker (its parts; never the password, only whether it has one), the
    settings that change a publish, and where its routing sends each of its tasks (args and kwargs empty)."""
    conn = app.connection_for_write()
    routes, params = {}, {}
    for name in user_tasks(app):
        try:
            routes[name] = routed_queue(app, app.tasks[name], [], {})
        except Exception:  # the user's router may want real arguments
            routes[name] = None
        params[name] = required_params(app.tasks[name])
    c = app.conf
    return {"transport": conn.transport_cls if isinstance(conn.transport_cls, str) else repr(conn.transport_cls),
            "hostname": conn.hostname, "port": conn.port, "userid": conn.userid,
            "has_password": bool(conn.password), "virtual_host": conn.virtual_host,
            "serializer": c.task_serializer, "compression": c.task_compression,
            "broker_pool_limit": c.broker_pool_limit,
            "confirm_publish": bool((c.broker_transport_options or {}).get("confirm_publish")),
            "transport_options": repr(dict(c.broker_transport_options or {})),
            "publish_retry": bool(c.task_publish_retry), "routes": routes, "params": params}


def required_params(task):
    """The parameters a call of `task` must give (Celery checks them on apply_async): positional names in
    `args`, keyword-only ones in `kwargs`; both empty when its signature cannot be read."""
    import inspect

    out = {"args": [], "kwargs": []}
    try:
        signature = inspect.signature(getattr(task, "__header__", None) or task.run)
    except (TypeError, ValueError):
        return out
    for p in signature.parameters.values():
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            out["args"].append(p.name)
        elif p.default is p.empty and p.kind == p.KEYWORD_ONLY:
            out["kwargs"].append(p.name)
    return out


def probe_task(app, query):
    """Whether the app has the task `query["name"]`, and where its routing sends it (or why it cannot)."""
    task, registered = task_of(app, query["name"])
    try:
        return {"registered": registered,
                "routed_queue": routed_queue(app, task, query["args"], query["kwargs"])}
    except Exception as exc:  # the user's router
        return {"registered": registered, "error": f"{type(exc).__name__}: {one_line(exc)}"}


def main():
    if sys.argv[1:] == ["--overhead"]:
        overhead()
        return
    if sys.argv[1:] == ["--probe"]:
        probe(json.loads(sys.stdin.read() or "{}"))
        return
    # Neither end of the channel goes to the processes the app may start.
    os.set_inheritable(COMMANDS, False)
    os.set_inheritable(ANSWERS, False)
    commands = os.fdopen(COMMANDS, "rb")
    line = commands.readline()
    if not line:
        return
    serve(json.loads(line), commands)


if __name__ == "__main__":
    main()
