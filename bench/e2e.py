"""End-to-end benchmark through a real mosquitto: the gateway against relays and Node-RED.

    .venv/bin/python bench/e2e.py --n 20000 --rounds 3

Contenders (see bench/README.md): ``c-relay`` (C on libmosquitto, acks after the upstream
PUBACK, window 100: the limit, every report gives the others' ratios to it), ``raw`` (paho
relay, no processing), ``raw-aiomqtt`` (the same relay with aiomqtt, asyncio),
``raw-mqtt5`` (the same relay on the gateway's own MQTT layer, acks after commit), ``naive``
(paho + json + allowlist), ``gateway-mqtt`` and ``gateway-file`` (``python -m gateway
run`` with full enforcement, MQTT or file sink), ``nodered`` (Node-RED 4.1.8, mqtt-in ->
function -> mqtt-out). Every trial gets a fresh mosquitto on a free 127.0.0.1 port and a
fresh contender process; rounds are interleaved (the order rotates each round) and the
report gives medians over rounds.

The C relay, publisher and subscriber (bench/c/*.c) are compiled at the start of a run into
bench/c/build (gitignored); libmosquitto-dev is installed with apt-get if it is missing.

One trial: start broker and contender; warm up until records come out; then

* saturated phase: one publisher process sends ``--n`` messages QoS1 as fast as it can,
  one subscriber process (or, for the file sink, a file tailer) records when each arrives;
* paced phase: ``--paced-n`` messages at ``--paced-rate`` msg/s, for latency below
  saturation (at saturation latency is mostly queueing in the broker).

After the rounds: the crash test (``--crash-n``: kill -9 of gateway-mqtt mid-stream, a
restart, lost records counted: must be 0) and the backlog test (``--backlog-n``: peak RSS
while a contender drains a backlog the broker queued while it was paused).

Messages are the simulated fleet (gateway.fleet.stream over the shipped policies) with the
miIO ``id`` field set to a sequence number. No policy keeps ``id``, so gateway records are
matched by their ``id``: the keyed digest of topic and payload, computed here with the same
master key the gateway is given (GATEWAY_MASTER_KEY). That also tells which messages the
gateway forwards (the rest are held: smartmi's policy names no region).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import datetime as dt
import importlib.util
import itertools
import json
import logging
import math
import os
import platform
import re
import secrets
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

BENCH = Path(__file__).resolve().parent
RELAYS = BENCH / "relays"
NODERED = BENCH / "nodered"
NODERED_JS = NODERED / "node_modules" / "node-red" / "red.js"
RESULTS_MD = BENCH / "RESULTS.md"
DATA_BEGIN = "```json e2e-data"
C_SRC = BENCH / "c"
C_BUILD = C_SRC / "build"  # gitignored (bench/c/.gitignore)
C_PROGRAMS = ("relay", "pub", "sub")

CONTENDERS = (
    "c-relay",
    "raw",
    "raw-aiomqtt",
    "raw-mqtt5",
    "naive",
    "gateway-mqtt",
    "gateway-file",
    "nodered",
)
LIMIT = "c-relay"
LABELS = {
    "c-relay": "C relay (libmosquitto, window 100): the limit",
    "raw": "raw relay (paho, no processing)",
    "raw-aiomqtt": "raw relay (aiomqtt, asyncio)",
    "raw-mqtt5": "raw relay (gateway/mqtt: asyncio + mqtt5 codec, acks after commit)",
    "naive": "naive relay (paho + json + allowlist)",
    "gateway-mqtt": "gateway, MQTT sink",
    "gateway-file": "gateway, file sink (fsync)",
    "nodered": "Node-RED 4.1.8 (mqtt -> function -> mqtt)",
}
KeyMode = Literal["seq", "record"]
PUBLISH_WINDOW = 30000  # unacknowledged publishes at most (< 65535 packet ids)


# -- the C programs: built here, at bench time -----------------------------------------------


class SetupError(Exception):
    """The bench cannot prepare what it needs; the message is one line."""


def _compiles(gcc: str, source: str) -> bool:
    res = subprocess.run(
        [gcc, "-x", "c", "-fsyntax-only", "-"],
        input=source.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return res.returncode == 0


def _install_libmosquitto_dev() -> None:
    """apt-get install libmosquitto-dev, as root; says so first."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise SetupError("libmosquitto-dev is missing and there is no apt-get to install it")
    if os.geteuid() != 0:
        raise SetupError(
            "libmosquitto-dev is missing: install it as root (apt-get install libmosquitto-dev)"
        )
    print("bench: libmosquitto-dev is missing: installing it with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [apt, "install", "-y", "-q", "--no-install-recommends", "libmosquitto-dev"]
    res = subprocess.run(cmd, capture_output=True, env=env, timeout=600, check=False)
    if res.returncode != 0:  # perhaps stale package lists: refresh them once
        subprocess.run(
            [apt, "update", "-q"], capture_output=True, env=env, timeout=600, check=False
        )
        res = subprocess.run(cmd, capture_output=True, env=env, timeout=600, check=False)
    if res.returncode != 0:
        why = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()
        raise SetupError(
            "apt-get install libmosquitto-dev failed: " + (why[-1] if why else "no output")
        )


def build_c() -> dict[str, Path]:
    """Compile bench/c/*.c (gcc -O2, -lmosquitto) into bench/c/build when a source is newer
    than its binary; installs libmosquitto-dev first if its header is missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SetupError("gcc not found: the C relay and clients need it (apt-get install gcc)")
    if not _compiles(gcc, "#include <mosquitto.h>\n"):
        _install_libmosquitto_dev()
        if not _compiles(gcc, "#include <mosquitto.h>\n"):
            raise SetupError("mosquitto.h still not found after installing libmosquitto-dev")
    C_BUILD.mkdir(exist_ok=True)
    out: dict[str, Path] = {}
    for name in C_PROGRAMS:
        src, exe = C_SRC / f"{name}.c", C_BUILD / name
        newest = max(src.stat().st_mtime, (C_SRC / "common.h").stat().st_mtime)
        if not exe.exists() or exe.stat().st_mtime < newest:
            cmd = [gcc, "-O2", "-Wall", "-Wextra", "-o", str(exe), str(src), "-lmosquitto"]
            res = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
            if res.returncode != 0:
                errs = res.stderr.decode(errors="replace").strip().splitlines()
                first = next((e for e in errs if "error" in e), errs[0] if errs else "")
                raise SetupError(f"gcc failed on bench/c/{name}.c: {first}")
        out[name] = exe
    return out


# -- job files exchanged with the publisher / subscriber processes ---------------------------


class PublishJob(msgspec.Struct, frozen=True):
    port: int
    messages: list[tuple[str, bytes]]
    rate: float  # msg/s; 0 = as fast as possible
    out: str
    max_s: float


class PublishResult(msgspec.Struct, frozen=True):
    times: list[float]  # time.monotonic() just before each publish()
    acked: int


class SubscribeJob(msgspec.Struct, frozen=True):
    mode: Literal["mqtt", "file"]
    port: int
    topic: str  # mqtt: topic filter
    path: str  # file: JSONL file to tail
    key: KeyMode
    base: int  # seq: ids base .. base + count - 1
    count: int
    record_ids: list[str]  # record: index -> record id ("" = not forwarded)
    expected: int
    idle_s: float
    max_s: float
    out: str


class SubscribeResult(msgspec.Struct, frozen=True):
    arrivals: list[float]  # index -> time.monotonic() of first arrival, -1.0 = never
    dupes: int
    extras: int


class _SeqId(msgspec.Struct):
    id: int


class _RecordId(msgspec.Struct):
    id: str


# -- publisher process -----------------------------------------------------------------------


def _connect(client_id: str, port: int, timeout: float = 10.0) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    # No in-flight limit: with one, paho scans its whole out-message dict on every PUBACK
    # (O(window) per message), which made the publisher the busiest process on the box.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    connected = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if not rc.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        raise SystemExit(f"{client_id}: no CONNACK from 127.0.0.1:{port}")
    return client


def role_publish(job_path: Path) -> int:
    job = msgspec.msgpack.decode(job_path.read_bytes(), type=PublishJob)
    n = len(job.messages)
    acked = 0
    all_acked = threading.Event()
    lock = threading.Lock()
    # MQTT packet ids are 16 bits: paho keys its out-messages by id, so more than 65535
    # unacknowledged publishes silently overwrite each other. Bound what is outstanding.
    window = threading.BoundedSemaphore(PUBLISH_WINDOW)

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        nonlocal acked
        window.release()
        with lock:
            acked += 1
            if acked >= n:
                all_acked.set()

    client = _connect(f"bench-pub-{os.getpid()}", job.port)
    client.on_publish = on_publish
    times = [0.0] * n
    mono = time.monotonic
    publish = client.publish
    t0 = mono()
    deadline = t0 + job.max_s
    for i, (topic, payload) in enumerate(job.messages):
        if job.rate > 0:
            delay = t0 + i / job.rate - mono()
            if delay > 0:
                time.sleep(delay)
        if not window.acquire(timeout=max(0.0, deadline - mono())):
            break
        times[i] = mono()
        publish(topic, payload, qos=1)
    all_acked.wait(max(1.0, deadline - mono()))
    client.disconnect()
    client.loop_stop()
    Path(job.out).write_bytes(msgspec.msgpack.encode(PublishResult(times, acked)))
    return 0 if acked >= n else 1


# -- subscriber process ----------------------------------------------------------------------


class _Arrivals:
    def __init__(self, job: SubscribeJob) -> None:
        self.job = job
        self.arrivals = [-1.0] * job.count
        self.got = 0
        self.dupes = 0
        self.extras = 0
        self.last = time.monotonic()
        self.done = threading.Event()
        self._seq = msgspec.json.Decoder(_SeqId)
        self._rec = msgspec.json.Decoder(_RecordId)
        self._index = {rid: i for i, rid in enumerate(job.record_ids) if rid}

    def index(self, body: bytes | bytearray) -> int | None:
        try:
            if self.job.key == "seq":
                i = self._seq.decode(body).id - self.job.base
                return i if 0 <= i < self.job.count else None
            return self._index.get(self._rec.decode(body).id)
        except msgspec.DecodeError:
            return None

    def arrived(self, body: bytes | bytearray, t: float) -> None:
        i = self.index(body)
        if i is None:
            self.extras += 1
            return
        if self.arrivals[i] >= 0:
            self.dupes += 1
            return
        self.arrivals[i] = t
        self.got += 1
        self.last = t
        if self.got >= self.job.expected:
            self.done.set()

    def wait(self) -> None:
        start = time.monotonic()
        while not self.done.wait(0.05):
            now = time.monotonic()
            if now - self.last > self.job.idle_s or now - start > self.job.max_s:
                break


def _tail(path: Path, arr: _Arrivals, ready: Callable[[], None]) -> None:
    """Poll a JSONL file every 2 ms from its current end; arrival = when a line is seen."""
    deadline = time.monotonic() + arr.job.max_s
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.touch(exist_ok=False)  # the sink opens it O_APPEND: creating it first is fine
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        ready()
        pending = b""
        while not arr.done.is_set() and time.monotonic() < deadline:
            chunk = fh.read(1 << 20)
            if not chunk:
                if time.monotonic() - arr.last > arr.job.idle_s:
                    return
                time.sleep(0.002)
                continue
            t = time.monotonic()
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                arr.arrived(line, t)


def role_subscribe(job_path: Path) -> int:
    job = msgspec.msgpack.decode(job_path.read_bytes(), type=SubscribeJob)
    arr = _Arrivals(job)

    def ready() -> None:
        arr.last = time.monotonic()
        print("ready", flush=True)

    if job.mode == "file":
        _tail(Path(job.path), arr, ready)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
        mono = time.monotonic

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            if not rc.is_failure:
                c.subscribe(job.topic, qos=1)

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
            ready()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            arr.arrived(msg.payload, mono())

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", job.port)
        client.loop_start()
        arr.wait()
        client.disconnect()
        client.loop_stop()
    result = SubscribeResult(arr.arrivals, arr.dupes, arr.extras)
    Path(job.out).write_bytes(msgspec.msgpack.encode(result))
    return 0


# -- messages --------------------------------------------------------------------------------


@dataclass
class MsgSet:
    name: str
    base: int
    messages: list[tuple[str, bytes]]
    record_ids: list[str]  # gateway record id per message, "" = held or rejected
    allowlisted: int  # messages of a product/kind the allowlist relays know (they drop the rest)

    @property
    def forwarded(self) -> int:
        return sum(1 for r in self.record_ids if r)


def build_sets(sizes: Sequence[tuple[str, int]], master_hex: str) -> list[MsgSet]:
    from gateway.engine import Engine
    from gateway.envelope import Record
    from gateway.fleet import make_devices, stream
    from gateway.policy.loader import load_dir
    from gateway.route.router import Router
    from gateway.transforms.pseudonymize import KeyRing, parse_master

    logging.getLogger("gateway").setLevel(logging.ERROR)
    policies = load_dir()
    devices = make_devices(policies, per_product=20)
    engine = Engine(policies, KeyRing(parse_master(master_hex)), Router("us"))
    src = stream(policies, devices)
    enc = msgspec.json.Encoder()
    out: list[MsgSet] = []
    seq = 0
    now = time.time()
    for name, size in sizes:
        msgs: list[tuple[str, bytes]] = []
        rids: list[str] = []
        for topic, payload in itertools.islice(src, size):
            doc = msgspec.json.decode(payload)
            doc["id"] = seq  # miIO request id: a sequence number the relays keep
            body = enc.encode(doc)
            rec = engine.process(topic, body, now)
            msgs.append((topic, body))
            rids.append(rec.id if isinstance(rec, Record) else "")
            seq += 1
        known = allowlist()
        listed = sum(1 for topic, _ in msgs if _product_kind(topic) in known)
        out.append(MsgSet(name, seq - size, msgs, rids, listed))
    return out


def _product_kind(topic: str) -> str:
    parts = topic.split("/")
    return f"{parts[1]}/{parts[3]}" if len(parts) == 4 else ""


def allowlist() -> dict[str, list[str]]:
    """What a user would write from the policies: per product/kind, the top-level keys of
    the fields the policy keeps as they are, plus the miIO request ``id``."""
    from gateway.policy.loader import load_dir

    out: dict[str, list[str]] = {}
    for pid, lp in sorted(load_dir().items()):
        for kind, rule in lp.policy.kinds.items():
            keys = {
                f.path.split(".")[0].removesuffix("[]") for f in rule.fields if f.action == "keep"
            }
            out[f"{pid}/{kind}"] = sorted(keys | {"id"})
    return out


# -- process helpers -------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if r and proc.stdout.readline().strip() == b"ready":
            return
        if proc.poll() is not None:
            raise RuntimeError("subscriber exited before it was ready")
    raise RuntimeError("subscriber not ready in time")


def _tail_text(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- contenders ------------------------------------------------------------------------------


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    mode: Literal["mqtt", "file"]
    topic: str
    path: str
    key: KeyMode
    log: Path
    metrics: str = ""  # gateway: its /metrics URL
    filters: bool = False  # drops messages of a product/kind not in the allowlist
    cmd: list[str] = field(default_factory=list)  # to restart it (crash test)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def restart(self) -> None:
        """Start the same command again (after the old process is gone)."""
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                self.cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd
            )


def _gateway_toml(port: int, tmp: Path, sink: str, metrics_port: int) -> str:
    q = json.dumps  # a TOML basic string is a JSON string for these paths
    lines = [
        f"state_dir = {q(str(tmp / 'state'))}",
        f'metrics_listen = "127.0.0.1:{metrics_port}"',
        "",
        "[source]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'client_id = "bench-gateway"',
        "",
        "[routing]",
        'default_region = "us"',
        "",
        "[[sinks]]",
        f'type = "{sink}"',
        f"[sinks.{sink}]",
    ]
    if sink == "mqtt":
        lines += ['host = "127.0.0.1"', f"port = {port}", 'topic_prefix = "out"', "qos = 1"]
    else:
        lines += [f"dir = {q(str(tmp / 'sinks'))}"]  # fsync = true: the default
    return "\n".join(lines) + "\n"


def start_contender(
    name: str, port: int, tmp: Path, allow_path: Path, master_hex: str, tools: dict[str, Path]
) -> Running:
    from gateway.brokers import free_port
    from gateway.config import load_config

    log = tmp / f"{name}.log"
    env = os.environ.copy()
    env.pop("GATEWAY_MASTER_KEY", None)
    py = sys.executable
    mode: Literal["mqtt", "file"] = "mqtt"
    path = ""
    key: KeyMode = "seq"
    metrics = ""
    if name == "c-relay":
        if "relay" not in tools:
            raise RuntimeError("C relay not built")
        cmd = [str(tools["relay"]), "--port", str(port), "--out-prefix", "relay/c", "--window"]
        cmd.append("100")
        topic = "relay/c/#"
    elif name == "raw":
        cmd = [py, str(RELAYS / "raw.py"), "--port", str(port), "--out-prefix", "relay/raw"]
        topic = "relay/raw/#"
    elif name == "raw-aiomqtt":
        if importlib.util.find_spec("aiomqtt") is None:
            raise RuntimeError(
                "aiomqtt not installed: run `pip install -e '.[bench]'` (see README)"
            )
        cmd = [
            py,
            str(RELAYS / "raw_aiomqtt.py"),
            "--port",
            str(port),
            "--out-prefix",
            "relay/raw-aiomqtt",
        ]
        topic = "relay/raw-aiomqtt/#"
    elif name == "raw-mqtt5":
        cmd = [py, str(RELAYS / "raw_mqtt5.py"), "--port", str(port)]
        cmd += ["--out-prefix", "relay/raw-mqtt5"]
        topic = "relay/raw-mqtt5/#"
    elif name == "naive":
        cmd = [
            py,
            str(RELAYS / "naive.py"),
            "--port",
            str(port),
            "--allow",
            str(allow_path),
            "--out-prefix",
            "relay/naive",
        ]
        topic = "relay/naive/#"
    elif name in ("gateway-mqtt", "gateway-file"):
        sink = name.removeprefix("gateway-")
        conf = tmp / "gateway.toml"
        metrics_port = free_port()
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        conf.write_text(_gateway_toml(port, tmp, sink, metrics_port))
        load_config(conf)  # fail here, not in the child
        cmd = [py, "-m", "gateway", "run", "--config", str(conf)]
        env["GATEWAY_MASTER_KEY"] = master_hex
        key = "record"
        topic = "out/#"
        if sink == "file":
            mode = "file"
            path = str(tmp / "sinks" / "us" / "records.jsonl")
    elif name == "nodered":
        node = shutil.which("node")
        if node is None or not NODERED_JS.exists():
            raise RuntimeError(
                "Node-RED not installed: run `npm ci --prefix bench/nodered` (see README)"
            )
        user_dir = tmp / "nodered-user"
        user_dir.mkdir()
        flow = user_dir / "flows.json"
        shutil.copyfile(NODERED / "flow.json", flow)
        env.update(
            BENCH_UI_PORT=str(free_port()),
            BENCH_USER_DIR=str(user_dir),
            BENCH_FLOW_FILE=str(flow),
            BENCH_MQTT_PORT=str(port),
            BENCH_ALLOWLIST=allow_path.read_text(),
        )
        cmd = [node, str(NODERED_JS), "--settings", str(NODERED / "settings.js")]
        topic = "relay/nodered/#"
    else:
        raise ValueError(name)
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    filters = name in ("naive", "nodered")
    return Running(proc, mode, topic, path, key, log, metrics, filters, cmd, env, tmp)


def warm_up(run: Running, port: int, warm: MsgSet, timeout: float) -> float:
    """Publish until the first record comes out (the contender is up and subscribed), then
    the whole warm-up set; returns seconds until the first record."""
    seen = 0
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        nonlocal seen
        with lock:
            seen += 1

    def count() -> int:
        if run.mode == "file":
            try:
                with Path(run.path).open("rb") as fh:
                    return sum(1 for _ in fh)
            except OSError:
                return 0
        with lock:
            return seen

    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-warmup-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_connect = lambda c, *_a: c.subscribe(run.topic, qos=1)
    if run.mode == "mqtt":
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        subscribed.wait(10)
    pub = _connect("bench-warmup-pub", port)
    t0 = time.monotonic()
    try:
        deadline = t0 + timeout
        i = 0
        while count() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no output within {timeout:g} s\n{_tail_text(run.log)}")
            if run.proc.poll() is not None:
                raise RuntimeError(f"contender exited\n{_tail_text(run.log)}")
            topic, payload = warm.messages[i % len(warm.messages)]
            pub.publish(topic, payload, qos=1)
            i += 1
            time.sleep(0.25)
        first = time.monotonic() - t0
        for topic, payload in warm.messages:
            pub.publish(topic, payload, qos=1)
        want = _expected(run, warm)
        deadline = time.monotonic() + 20
        while count() < want and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        return first
    finally:
        pub.disconnect()
        pub.loop_stop()
        if run.mode == "mqtt":
            sub.disconnect()
            sub.loop_stop()


@dataclass
class Phase:
    n_in: int
    pub_acked: int  # publishes the broker acknowledged (should be n_in)
    expected: int
    delivered: int
    dupes: int
    msgs_per_s: float  # input messages / (last arrival - first publish)
    publish_per_s: float  # how fast the publisher got them out
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_msg: float  # contender CPU time per input message
    broker_cpu_us_per_msg: float
    last_arrival: float = math.nan  # time.monotonic() of the last first arrival


def _percentile(sorted_xs: Sequence[float], p: float) -> float:
    if not sorted_xs:
        return math.nan
    k = max(0, math.ceil(p / 100 * len(sorted_xs)) - 1)
    return sorted_xs[k]


def _expected(run: Running, ms: MsgSet) -> int:
    if run.key == "record":
        return ms.forwarded
    return ms.allowlisted if run.filters else len(ms.messages)


def _write_c_messages(path: Path, messages: Sequence[tuple[str, bytes]]) -> None:
    """The C publisher's input: [u16 topic length][topic][u32 payload length][payload]."""
    parts = []
    for topic, payload in messages:
        t = topic.encode()
        parts += [struct.pack("<H", len(t)), t, struct.pack("<I", len(payload)), payload]
    path.write_bytes(b"".join(parts))


def _read_c_pub(path: Path) -> PublishResult:
    data = path.read_bytes()
    acked, n = struct.unpack_from("<QQ", data)
    times = array.array("d")
    times.frombytes(data[16 : 16 + 8 * n])
    return PublishResult(times.tolist(), acked)


def _read_c_sub(path: Path, job: SubscribeJob) -> SubscribeResult:
    data = path.read_bytes()
    arr = _Arrivals(job)
    pos = 0
    while pos + 12 <= len(data):
        t, n = struct.unpack_from("<dI", data, pos)
        arr.arrived(data[pos + 12 : pos + 12 + n], t)
        pos += 12 + n
    return SubscribeResult(arr.arrivals, arr.dupes, arr.extras)


Hook = Callable[[subprocess.Popen[bytes]], None]


def run_phase(
    run: Running,
    port: int,
    broker_pid: int,
    ms: MsgSet,
    rate: float,
    tmp: Path,
    max_s: float,
    tools: dict[str, Path],
    *,
    idle_s: float = 10.0,
    before_pub: Callable[[], None] | None = None,
    while_pub: Hook | None = None,
) -> Phase:
    """One phase: subscriber ready, publisher sends ``ms``, both exit, results read back.
    The C publisher and subscriber are used when built (``tools``), else paho in Python
    (the file sink is always tailed in Python). ``before_pub`` runs just before the
    publisher starts, ``while_pub`` with the publisher running (it may wait for it)."""
    py = sys.executable
    me = str(Path(__file__).resolve())
    expected = _expected(run, ms)
    c_sub = run.mode == "mqtt" and "sub" in tools
    c_pub = "pub" in tools
    sjob = SubscribeJob(
        mode=run.mode,
        port=port,
        topic=run.topic,
        path=run.path,
        key=run.key,
        base=ms.base,
        count=len(ms.messages),
        record_ids=ms.record_ids if run.key == "record" else [],
        expected=expected,
        idle_s=idle_s,
        max_s=max_s,
        out=str(tmp / f"sub-{ms.name}.out"),
    )
    pjob = PublishJob(port, ms.messages, rate, str(tmp / f"pub-{ms.name}.out"), max_s)
    if c_sub:
        sub_cmd = [str(tools["sub"]), "--port", str(port), "--topic", run.topic]
        sub_cmd += ["--out", sjob.out, "--expected", str(expected)]
        sub_cmd += ["--idle-s", f"{idle_s:g}", "--max-s", f"{max_s:g}"]
    else:
        (tmp / f"sub-{ms.name}.job").write_bytes(msgspec.msgpack.encode(sjob))
        sub_cmd = [py, me, "--role", "subscribe", "--job", str(tmp / f"sub-{ms.name}.job")]
    if c_pub:
        _write_c_messages(tmp / f"pub-{ms.name}.in", ms.messages)
        pub_cmd = [str(tools["pub"]), "--port", str(port), "--in", str(tmp / f"pub-{ms.name}.in")]
        pub_cmd += ["--out", pjob.out, "--rate", f"{rate:g}", "--window", str(PUBLISH_WINDOW)]
        pub_cmd += ["--max-s", f"{max_s:g}"]
    else:
        (tmp / f"pub-{ms.name}.job").write_bytes(msgspec.msgpack.encode(pjob))
        pub_cmd = [py, me, "--role", "publish", "--job", str(tmp / f"pub-{ms.name}.job")]
    sub = subprocess.Popen(sub_cmd, stdout=subprocess.PIPE)
    pub: subprocess.Popen[bytes] | None = None
    try:
        _wait_ready(sub, 20)
        cpu0, bcpu0 = _proc_cpu_s(run.proc.pid), _proc_cpu_s(broker_pid)
        if before_pub is not None:
            before_pub()
        pub = subprocess.Popen(pub_cmd)
        if while_pub is not None:
            while_pub(pub)
        pub.wait(max_s + 30)
        sub.wait(max_s + idle_s + 30)
        cpu1, bcpu1 = _proc_cpu_s(run.proc.pid), _proc_cpu_s(broker_pid)
    finally:
        _stop(pub, 5)
        _stop(sub, 5)
    pres = (
        _read_c_pub(Path(pjob.out))
        if c_pub
        else msgspec.msgpack.decode(Path(pjob.out).read_bytes(), type=PublishResult)
    )
    sres = (
        _read_c_sub(Path(sjob.out), sjob)
        if c_sub
        else msgspec.msgpack.decode(Path(sjob.out).read_bytes(), type=SubscribeResult)
    )
    lat = sorted(
        (a - p) * 1000 for a, p in zip(sres.arrivals, pres.times, strict=True) if a >= 0 and p > 0
    )
    arrived = [a for a in sres.arrivals if a >= 0]
    n = len(ms.messages)
    sent = [t for t in pres.times if t > 0]
    first_pub, last_pub = (sent[0], sent[-1]) if sent else (math.nan, math.nan)
    span = (max(arrived) - first_pub) if arrived else math.nan
    return Phase(
        n_in=n,
        pub_acked=pres.acked,
        expected=expected,
        delivered=len(arrived),
        dupes=sres.dupes,
        msgs_per_s=n / span if arrived else 0.0,
        publish_per_s=n / (last_pub - first_pub) if last_pub > first_pub else math.nan,
        p50_ms=_percentile(lat, 50),
        p99_ms=_percentile(lat, 99),
        max_ms=lat[-1] if lat else math.nan,
        cpu_us_per_msg=(cpu1 - cpu0) / n * 1e6,
        broker_cpu_us_per_msg=(bcpu1 - bcpu0) / n * 1e6,
        last_arrival=max(arrived) if arrived else math.nan,
    )


@dataclass
class Trial:
    contender: str
    round: int
    ok: bool
    error: str = ""
    startup_s: float = math.nan
    rss_mib: float = math.nan
    saturated: Phase | None = None
    paced: Phase | None = None
    # gateway only, from its /metrics after the run (warm-up included): messages by outcome
    gateway_outcomes: dict[str, float] = field(default_factory=dict)
    kind: Literal["round", "crash", "backlog"] = "round"
    crash: Crash | None = None
    backlog: Backlog | None = None


@dataclass
class Crash:
    """kill -9 of the contender mid-stream, then a restart with the same state."""

    published: int  # publishes the broker acknowledged
    expected: int  # records the contender forwards for them
    delivered: int  # distinct records that arrived
    lost: int  # expected - delivered: must be 0
    duplicates: int  # copies delivered again after the restart (at-least-once)
    received_at_kill: int  # messages of this phase the contender had taken when it was killed
    phase: Phase


@dataclass
class Backlog:
    """The contender paused (SIGSTOP) while the broker queues ``n`` messages for it, then
    resumed: its peak RSS while it drains them."""

    n: int
    peak_rss_mib: float  # VmHWM over the contender's life: start, warm-up, the backlog
    drain_per_s: float  # input messages / (last arrival - resume)
    phase: Phase


def scrape_outcomes(url: str) -> dict[str, float]:
    """Sum gateway_messages_total by outcome, and gateway_messages_received_total."""
    import urllib.request

    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=5) as resp:  # 127.0.0.1 only
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("gateway_messages_received_total{"):
            out["received"] = out.get("received", 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("gateway_messages_total{"):
            m = re.search(r'outcome="([^"]+)"', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def run_trial(
    name: str,
    rnd: int,
    sets: dict[str, MsgSet],
    paced_rate: float,
    allow_path: Path,
    master_hex: str,
    max_s: float,
    nodelay: bool,
    tools: dict[str, Path],
    kind: Literal["round", "crash", "backlog"] = "round",
) -> Trial:
    """A fresh broker and contender. ``round``: warm-up, saturated and paced phases.
    ``crash``: warm-up, then ``sets["crash"]`` with a kill -9 and restart mid-stream.
    ``backlog``: warm-up, then ``sets["backlog"]`` queued while the contender is paused."""
    from gateway.brokers import BrokerError, LocalMosquitto

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-e2e-{name}-"))
    broker = LocalMosquitto()
    run: Running | None = None
    trial = Trial(name, rnd, ok=False, kind=kind)
    try:
        # LocalMosquitto turns Nagle off; without --broker-nodelay, measure mosquitto's
        # own default (Nagle on) by taking that line out again.
        conf = broker.conf.read_text().replace("set_tcp_nodelay true\n", "")
        broker.conf.write_text(conf + ("set_tcp_nodelay true\n" if nodelay else ""))
        broker.start()
        assert broker.proc is not None
        t0 = time.monotonic()
        run = start_contender(name, broker.port, tmp, allow_path, master_hex, tools)
        warm_up(run, broker.port, sets["warmup"], timeout=60)
        trial.startup_s = time.monotonic() - t0
        if kind == "crash":
            trial.crash = crash_phase(
                run, broker.port, broker.proc.pid, sets["crash"], tmp, max_s, tools
            )
        elif kind == "backlog":
            trial.backlog = backlog_phase(
                run, broker.port, broker.proc.pid, sets["backlog"], tmp, max_s, tools
            )
        else:
            trial.saturated = run_phase(
                run, broker.port, broker.proc.pid, sets["saturated"], 0.0, tmp, max_s, tools
            )
            if "paced" in sets:
                trial.paced = run_phase(
                    run,
                    broker.port,
                    broker.proc.pid,
                    sets["paced"],
                    paced_rate,
                    tmp,
                    max_s,
                    tools,
                )
        trial.rss_mib = _vm_hwm_mib(run.proc.pid)
        if run.metrics:
            # A record can arrive before its batch's commit returned (the sink still waits
            # for the last PUBACKs), so give the counters a moment to settle.
            for _ in range(20):
                trial.gateway_outcomes = scrape_outcomes(run.metrics)
                counts = trial.gateway_outcomes
                settled = sum(v for k, v in counts.items() if k != "received")
                if settled >= counts.get("received", 0.0):
                    break
                time.sleep(0.1)
        if run.proc.poll() is not None:
            raise RuntimeError(f"contender exited during the run\n{_tail_text(run.log)}")
        trial.ok = True
    except (
        RuntimeError,
        OSError,
        BrokerError,
        subprocess.TimeoutExpired,
        msgspec.DecodeError,
    ) as exc:
        trial.error = f"{type(exc).__name__}: {exc}"
    finally:
        if run is not None:
            with contextlib.suppress(OSError):
                run.proc.send_signal(signal.SIGCONT)  # in case a backlog phase failed
            _stop(run.proc)
        broker.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return trial


def crash_phase(
    run: Running,
    port: int,
    broker_pid: int,
    ms: MsgSet,
    tmp: Path,
    max_s: float,
    tools: dict[str, Path],
) -> Crash:
    """Publish ``ms`` at full speed; once the contender has taken a third of it (its
    /metrics received counter), kill -9 it, restart it on the same state, and count what
    arrives. A durable contender loses nothing: the broker redelivers what it had not
    acknowledged, so copies may arrive twice, none may be missing."""
    if not run.metrics:
        raise RuntimeError("the crash test needs a contender with /metrics (the gateway)")
    base = scrape_outcomes(run.metrics).get("received", 0.0)
    at_kill = 0

    def kill_mid_stream(_pub: subprocess.Popen[bytes]) -> None:
        nonlocal at_kill
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                at_kill = int(scrape_outcomes(run.metrics).get("received", 0.0) - base)
            # Its own progress, not the publisher's: the publisher is done long before.
            if at_kill >= len(ms.messages) // 3:
                break
            time.sleep(0.02)
        run.proc.kill()  # SIGKILL: no shutdown, no flush
        run.proc.wait(10)
        time.sleep(0.5)
        run.restart()

    phase = run_phase(
        run, port, broker_pid, ms, 0.0, tmp, max_s, tools, idle_s=30.0, while_pub=kill_mid_stream
    )
    if run.proc.poll() is not None:
        raise RuntimeError(f"contender exited after its restart\n{_tail_text(run.log)}")
    return Crash(
        published=phase.pub_acked,
        expected=phase.expected,
        delivered=phase.delivered,
        lost=phase.expected - phase.delivered,
        duplicates=phase.dupes,
        received_at_kill=at_kill,
        phase=phase,
    )


def backlog_phase(
    run: Running,
    port: int,
    broker_pid: int,
    ms: MsgSet,
    tmp: Path,
    max_s: float,
    tools: dict[str, Path],
) -> Backlog:
    """SIGSTOP the contender, publish ``ms`` (the broker queues it), SIGCONT, let it drain."""
    resumed = math.nan

    def pause() -> None:
        run.proc.send_signal(signal.SIGSTOP)

    def resume_after_publish(pub: subprocess.Popen[bytes]) -> None:
        nonlocal resumed
        try:
            pub.wait(max_s + 30)
        finally:
            resumed = time.monotonic()
            run.proc.send_signal(signal.SIGCONT)

    phase = run_phase(
        run,
        port,
        broker_pid,
        ms,
        0.0,
        tmp,
        max_s,
        tools,
        idle_s=30.0,
        before_pub=pause,
        while_pub=resume_after_publish,
    )
    drain = phase.last_arrival - resumed
    return Backlog(
        n=len(ms.messages),
        peak_rss_mib=_vm_hwm_mib(run.proc.pid),
        drain_per_s=len(ms.messages) / drain if drain > 0 else math.nan,
        phase=phase,
    )


# -- report ----------------------------------------------------------------------------------


@dataclass
class Summary:
    contender: str
    rounds: int
    msgs_per_s: float
    msgs_per_s_min: float
    msgs_per_s_max: float
    delivered: str
    p50_ms: float
    p99_ms: float
    paced_p50_ms: float
    paced_p99_ms: float
    rss_mib: float
    cpu_us_per_msg: float
    broker_cpu_us_per_msg: float
    startup_s: float
    errors: list[str] = field(default_factory=list)


def _med(xs: Iterator[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return statistics.median(vals) if vals else math.nan


def summarise(trials: Sequence[Trial], names: Sequence[str]) -> list[Summary]:
    out = []
    for name in names:
        ok = [t for t in trials if t.contender == name and t.ok and t.saturated]
        sat = [t.saturated for t in ok if t.saturated is not None]
        paced = [t.paced for t in ok if t.paced is not None]
        rates = [p.msgs_per_s for p in sat]
        delivered = ", ".join(sorted({f"{p.delivered}/{p.expected}" for p in sat})) or "-"
        out.append(
            Summary(
                contender=name,
                rounds=len(ok),
                msgs_per_s=_med(iter(rates)),
                msgs_per_s_min=min(rates, default=math.nan),
                msgs_per_s_max=max(rates, default=math.nan),
                delivered=delivered,
                p50_ms=_med(p.p50_ms for p in sat),
                p99_ms=_med(p.p99_ms for p in sat),
                paced_p50_ms=_med(p.p50_ms for p in paced),
                paced_p99_ms=_med(p.p99_ms for p in paced),
                rss_mib=_med(t.rss_mib for t in ok),
                cpu_us_per_msg=_med(p.cpu_us_per_msg for p in sat),
                broker_cpu_us_per_msg=_med(p.broker_cpu_us_per_msg for p in sat),
                startup_s=_med(t.startup_s for t in ok),
                errors=[
                    f"round {t.round}: {t.error}"
                    for t in trials
                    if t.contender == name and not t.ok
                ],
            )
        )
    return out


def _f(x: float, digits: int = 0) -> str:
    return "-" if math.isnan(x) else f"{x:,.{digits}f}"


def _version(cmd: Sequence[str], pattern: str) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, (res.stdout + res.stderr).decode(errors="replace"))
    return m.group(1) if m else "?"


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    from gateway.brokers import find_mosquitto

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    node = shutil.which("node")
    nr = "not installed"
    with contextlib.suppress(OSError, ValueError):
        nr = json.loads((NODERED_JS.parent / "package.json").read_text())["version"]
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paho-mqtt": metadata.version("paho-mqtt"),
        "aiomqtt": _dist_version("aiomqtt"),
        "msgspec": metadata.version("msgspec"),
        "mosquitto": _version([find_mosquitto() or "mosquitto", "-h"], r"version (\S+)"),
        "node": _version([node, "-v"], r"v(\S+)") if node else "not installed",
        "node-red": nr,
    }


def _ratio(a: float, b: float) -> str:
    return "-" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}"


def markers(section: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN {section}: generated by bench/e2e.py, edits inside are lost -->",
        f"<!-- END {section} -->",
    )


def _limit_table(summaries: Sequence[Summary]) -> list[str]:
    """Every contender against the C relay: the limit of relaying through this broker."""
    limit = next((s for s in summaries if s.contender == LIMIT), None)
    if limit is None:
        return []
    lines = [
        f"Against the limit (`{LIMIT}`), medians over rounds:",
        "",
        "| contender | msgs/s | vs the limit | CPU us/msg | CPU vs the limit | peak RSS MiB |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        lines.append(
            f"| {LABELS[s.contender]} | {_f(s.msgs_per_s)} | "
            f"{_ratio(s.msgs_per_s, limit.msgs_per_s)} | {_f(s.cpu_us_per_msg)} | "
            f"{_ratio(s.cpu_us_per_msg, limit.cpu_us_per_msg)} | {_f(s.rss_mib, 1)} |"
        )
    return [*lines, ""]


def _special_tables(special: Sequence[Trial]) -> list[str]:
    lines: list[str] = []
    crashes = [t for t in special if t.ok and t.crash is not None]
    if crashes:
        lines += [
            "",
            "Crash test: the contender is killed (SIGKILL) once it has taken a third of the "
            "messages, restarted on the same state 0.5 s later; the publisher does not wait "
            "for it. lost = expected - delivered (distinct records); duplicates are copies "
            "delivered again after the restart (at-least-once).",
            "",
            "| contender | messages | published (broker acked) | expected out | delivered | "
            "**lost** | duplicates | taken when killed |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for t in crashes:
            c = t.crash
            assert c is not None
            lines.append(
                f"| {LABELS[t.contender]} | {c.phase.n_in} | {c.published} | {c.expected} | "
                f"{c.delivered} | **{c.lost}** | {c.duplicates} | {c.received_at_kill} |"
            )
    backlogs = [t for t in special if t.ok and t.backlog is not None]
    if backlogs:
        lines += [
            "",
            "Backlog: the contender is paused (SIGSTOP) while the publisher puts the backlog "
            "into the broker, then resumed; peak RSS is VmHWM over its whole life (start, "
            "warm-up, backlog), drain rate = backlog / (last arrival - resume).",
            "",
            "| contender | backlog | peak RSS MiB | drain msgs/s | out/expected |",
            "|---|--:|--:|--:|--:|",
        ]
        for t in backlogs:
            b = t.backlog
            assert b is not None
            lines.append(
                f"| {LABELS[t.contender]} | {b.n} | {_f(b.peak_rss_mib, 1)} | "
                f"{_f(b.drain_per_s)} | {b.phase.delivered}/{b.phase.expected} |"
            )
    return lines


def render(
    section: str,
    info: dict[str, str],
    args: dict[str, Any],
    summaries: Sequence[Summary],
    trials: Sequence[Trial],
    special: Sequence[Trial] = (),
) -> str:
    by = {s.contender: s for s in summaries}
    begin, end = markers(section)
    broker = (
        "`set_tcp_nodelay true` added (Nagle off on the broker's sockets)"
        if args["broker_nodelay"]
        else "mosquitto's default `set_tcp_nodelay false` (Nagle on the broker's sockets)"
    )
    lines = [
        begin,
        "",
        f"Run {info['date']}, {args['elapsed_s']:.0f} s: `{args['command']}`",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, "
        f"Python {info['python']}, paho-mqtt {info['paho-mqtt']}, aiomqtt "
        f"{info['aiomqtt']}, mosquitto "
        f"{info['mosquitto']}, Node.js {info['node']}, Node-RED {info['node-red']}. "
        f"Broker config: {broker}.",
        "",
        f"N = {args['n']} messages per saturated phase, {args['rounds']} interleaved rounds "
        f"(fresh broker and contender per trial, order rotating), paced phase "
        f"{args['paced_n']} messages at {args['paced_rate']:g} msg/s. Medians over rounds; "
        "the range is min-max of msgs/s over rounds.",
        "",
        "| contender | msgs/s | range | out/expected | p50 ms | p99 ms | "
        "paced p50 ms | paced p99 ms | peak RSS MiB | CPU us/msg | broker CPU us/msg |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        lines.append(
            f"| {LABELS[s.contender]} | {_f(s.msgs_per_s)} | "
            f"{_f(s.msgs_per_s_min)}-{_f(s.msgs_per_s_max)} | {s.delivered} | "
            f"{_f(s.p50_ms)} | {_f(s.p99_ms)} | {_f(s.paced_p50_ms, 1)} | "
            f"{_f(s.paced_p99_ms, 1)} | {_f(s.rss_mib, 1)} | {_f(s.cpu_us_per_msg)} | "
            f"{_f(s.broker_cpu_us_per_msg)} |"
        )
    lines += [""]
    lines += _limit_table(summaries)
    for g in ("gateway-mqtt", "gateway-file"):
        if g not in by:
            continue
        gs = by[g]
        others = [
            o
            for o in ("raw", "raw-aiomqtt", "raw-mqtt5", "naive", "nodered", "gateway-mqtt")
            if o in by and o != g
        ]
        if not others:
            continue
        lines += [
            f"Ratios, {LABELS[g]} / other:",
            "",
            "| vs | msgs/s | paced p50 | peak RSS | CPU/msg |",
            "|---|--:|--:|--:|--:|",
        ]
        for o in others:
            os_ = by[o]
            lines.append(
                f"| {o} | {_ratio(gs.msgs_per_s, os_.msgs_per_s)} | "
                f"{_ratio(gs.paced_p50_ms, os_.paced_p50_ms)} | "
                f"{_ratio(gs.rss_mib, os_.rss_mib)} | "
                f"{_ratio(gs.cpu_us_per_msg, os_.cpu_us_per_msg)} |"
            )
        lines.append("")
    lines += [
        "Per round (saturated msgs/s / paced p50 ms):",
        "",
        "| round | " + " | ".join(s.contender for s in summaries) + " |",
        "|---|" + "--:|" * len(summaries),
    ]
    for r in sorted({t.round for t in trials}):
        cells = []
        for s in summaries:
            t = next((t for t in trials if t.round == r and t.contender == s.contender), None)
            if t is None:
                cells.append("skipped")
            elif not t.ok or t.saturated is None:
                cells.append("failed")
            else:
                pp = t.paced.p50_ms if t.paced else math.nan
                cells.append(f"{_f(t.saturated.msgs_per_s)} / {_f(pp, 1)}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    short = [
        t
        for t in trials
        if t.ok
        and t.saturated is not None
        and (
            t.saturated.pub_acked < t.saturated.n_in or t.saturated.delivered < t.saturated.expected
        )
    ]
    if short:
        lines += ["", "Incomplete deliveries:", ""]
        lines += [
            f"- {t.contender} round {t.round}: broker acked "
            f"{t.saturated.pub_acked}/{t.saturated.n_in} publishes, "
            f"{t.saturated.delivered}/{t.saturated.expected} arrived"
            for t in short
            if t.saturated is not None
        ]
    counters: dict[tuple[str, str], list[int]] = {}
    for t in trials:
        if t.gateway_outcomes:
            text = ", ".join(f"{k} {v:.0f}" for k, v in sorted(t.gateway_outcomes.items()))
            counters.setdefault((t.contender, text), []).append(t.round)
    if counters:
        lines += [
            "",
            "Gateway counters at the end of each trial (its /metrics, warm-up included):",
            "",
        ]
        lines += [
            f"- {name}, rounds {', '.join(map(str, sorted(rounds)))}: {text}"
            for (name, text), rounds in counters.items()
        ]
    lines += _special_tables(special)
    errors = [e for s in summaries for e in (f"{s.contender} {x}" for x in s.errors)]
    errors += [f"{t.contender} {t.kind} test: {t.error}" for t in special if not t.ok]
    if errors:
        lines += ["", "Failures:", ""]
        lines += ["- " + e.splitlines()[0] for e in errors]
    data = {
        "section": section,
        "info": info,
        "args": args,
        "labels": LABELS,
        "summaries": [asdict(s) for s in summaries],
        "trials": [asdict(t) for t in trials],
        "special": [asdict(t) for t in special],
    }
    lines += [
        "",
        "<details><summary>raw data (read by bench/plot.py)</summary>",
        "",
        DATA_BEGIN,
        json.dumps(data, default=str),
        "```",
        "",
        "</details>",
        "",
        end,
    ]
    return "\n".join(lines)


def write_results(section: str, text: str, path: Path = RESULTS_MD) -> None:
    """Replace the section between its markers; keep everything else in the file."""
    begin, end = markers(section)
    old = path.read_text() if path.exists() else "# End-to-end benchmark results\n"
    if begin in old and end in old:
        new = old.split(begin, 1)[0] + text + old.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="messages per saturated phase")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--paced-n", type=int, default=1500, help="0 = no paced phase")
    p.add_argument("--paced-rate", type=float, default=500.0, help="msg/s of the paced phase")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="add `set_tcp_nodelay true` to the broker config (own RESULTS section)",
    )
    p.add_argument(
        "--budget-s", type=float, default=600.0, help="start no new trial after this many seconds"
    )
    p.add_argument("--phase-max-s", type=float, default=120.0)
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    p.add_argument(
        "--clients",
        choices=("c", "paho"),
        default="c",
        help="publisher and subscriber: the C programs (default) or paho in Python",
    )
    p.add_argument(
        "--crash-n",
        type=int,
        default=20000,
        help="messages of the crash test of gateway-mqtt (kill -9 mid-stream); 0 = none",
    )
    p.add_argument(
        "--backlog-n", type=int, default=60000, help="messages of the backlog test; 0 = none"
    )
    p.add_argument(
        "--backlog-contenders",
        default="",
        help="contenders of the backlog test (default: all of --contenders)",
    )
    p.add_argument("--role", choices=("publish", "subscribe"), help=argparse.SUPPRESS)
    p.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "publish":
        return role_publish(args.job)
    if args.role == "subscribe":
        return role_subscribe(args.job)

    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in names if c not in CONTENDERS]
    if bad or args.n < 1 or args.rounds < 1 or args.warmup < 1:
        p.error(f"unknown contenders {bad}" if bad else "--n, --rounds, --warmup must be >= 1")
    backlog_names = [
        c.strip() for c in (args.backlog_contenders or args.contenders).split(",") if c.strip()
    ]
    if args.backlog_n <= 0:
        backlog_names = []
    if any(c not in CONTENDERS for c in backlog_names):
        p.error(f"unknown backlog contenders {backlog_names}")
    crash = args.crash_n > 0 and "gateway-mqtt" in names
    started = time.monotonic()
    tools: dict[str, Path] = {}
    if args.clients == "c" or LIMIT in names or LIMIT in backlog_names:
        try:
            tools = build_c()
        except (SetupError, OSError, subprocess.TimeoutExpired) as exc:
            raise SystemExit(f"bench: cannot build the C relay and clients: {exc}") from None
        if args.clients == "paho":
            tools = {"relay": tools["relay"]}
    master_hex = secrets.token_hex(32)
    sizes = [("warmup", args.warmup), ("saturated", args.n)]
    if args.paced_n > 0:
        sizes.append(("paced", args.paced_n))
    if crash:
        sizes.append(("crash", args.crash_n))
    if backlog_names:
        sizes.append(("backlog", args.backlog_n))
    sets = {s.name: s for s in build_sets(sizes, master_hex)}
    allow_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-allow-"))
    allow_path = allow_dir / "allowlist.json"
    allow_path.write_text(json.dumps(allowlist()))
    info = machine_info()
    section = "e2e-nodelay" if args.broker_nodelay else "e2e"
    print(
        f"e2e [{section}]: {len(names)} contenders x {args.rounds} rounds, N={args.n}; "
        f"the gateway forwards {sets['saturated'].forwarded}/{args.n}",
        flush=True,
    )
    trials: list[Trial] = []
    special: list[Trial] = []
    try:
        for rnd in range(1, args.rounds + 1):
            k = (rnd - 1) % len(names)
            for name in names[k:] + names[:k]:
                if time.monotonic() - started > args.budget_s:
                    print(f"  budget of {args.budget_s:g} s spent: skipping {name} round {rnd}")
                    continue
                t = run_trial(
                    name,
                    rnd,
                    sets,
                    args.paced_rate,
                    allow_path,
                    master_hex,
                    args.phase_max_s,
                    args.broker_nodelay,
                    tools,
                )
                trials.append(t)
                if t.ok and t.saturated is not None:
                    s, pc = t.saturated, t.paced
                    print(
                        f"  round {rnd} {name:13s} {s.msgs_per_s:9,.0f} msg/s  "
                        f"{s.delivered}/{s.expected}  p50 {s.p50_ms:7.1f} ms  "
                        f"p99 {s.p99_ms:7.1f} ms  paced p50 "
                        f"{pc.p50_ms if pc else math.nan:6.1f} ms  "
                        f"rss {t.rss_mib:6.1f} MiB  cpu {s.cpu_us_per_msg:5.0f} us/msg",
                        flush=True,
                    )
                else:
                    print(f"  round {rnd} {name:13s} FAILED: {t.error}", flush=True)
        special_runs: list[tuple[str, Literal["crash", "backlog"]]] = []
        if crash:
            special_runs.append(("gateway-mqtt", "crash"))
        special_runs += [(name, "backlog") for name in backlog_names]
        for name, kind in special_runs:
            if time.monotonic() - started > args.budget_s:
                print(f"  budget of {args.budget_s:g} s spent: skipping the {kind} test of {name}")
                continue
            t = run_trial(
                name,
                0,
                sets,
                args.paced_rate,
                allow_path,
                master_hex,
                args.phase_max_s,
                args.broker_nodelay,
                tools,
                kind,
            )
            special.append(t)
            if not t.ok:
                print(f"  {kind} {name:13s} FAILED: {t.error}", flush=True)
            elif t.crash is not None:
                c = t.crash
                print(
                    f"  crash {name:13s} published {c.published}  expected {c.expected}  "
                    f"delivered {c.delivered}  LOST {c.lost}  duplicates {c.duplicates}",
                    flush=True,
                )
            elif t.backlog is not None:
                b = t.backlog
                print(
                    f"  backlog {name:13s} {b.n} queued: peak rss {b.peak_rss_mib:6.1f} MiB  "
                    f"drain {b.drain_per_s:9,.0f} msg/s  "
                    f"{b.phase.delivered}/{b.phase.expected}",
                    flush=True,
                )
    finally:
        shutil.rmtree(allow_dir, ignore_errors=True)
    summaries = summarise(trials, names)
    cmd = "python bench/e2e.py " + " ".join(sys.argv[1:] if argv is None else argv)
    run_args = {
        "command": cmd.strip(),
        "n": args.n,
        "rounds": args.rounds,
        "paced_n": args.paced_n,
        "paced_rate": args.paced_rate,
        "warmup": args.warmup,
        "broker_nodelay": args.broker_nodelay,
        "clients": args.clients,
        "crash_n": args.crash_n if crash else 0,
        "backlog_n": args.backlog_n if backlog_names else 0,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    text = render(section, info, run_args, summaries, trials, special)
    print(text.split("<details>")[0])
    if not args.no_write:
        write_results(section, text)
        subprocess.run([sys.executable, str(BENCH / "plot.py")], check=False, timeout=60)
    lost = any(t.crash is not None and t.crash.lost != 0 for t in special)
    return 0 if all(t.ok for t in [*trials, *special]) and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
