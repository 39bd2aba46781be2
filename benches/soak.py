#!/usr/bin/env python3
"""The faulted soak (driven by benches/soak.sh, which brings up the stack and builds walcast).

Two connectors read the same five tables, one `exactly_once`, one `transactional`, each a
walcast process of its own connected to PostgreSQL through a TCP proxy. A workload writes
about RATE row changes a second (multi-table transactions, TOASTed values left unchanged by
updates, key changes, deletes, a column added and later dropped, a large transaction that
PostgreSQL streams before its commit every few minutes) while, every 20-60 s at seeded
moments, one fault strikes: kill -9 of a walcast, a PostgreSQL restart, the broker stopped
for a while, the schema registry stopped for a while, or every PostgreSQL connection cut at
the proxy. Walcast processes that exit are started again, as a service manager would.

At the end every topic, read read_committed (`walcast tail`), must equal a `test_decoding`
oracle slot created before the workload, per table and key: none lost, none repeated, order
kept. It prints each walcast's peak RSS over time and how long after the last fault the slots
were confirmed at the end of the WAL. Exits non-zero when a topic differs.
"""

import argparse
import collections
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

TABLES = ["accounts", "orders", "items", "events", "shapes"]
MODES = {"soak_eo": "exactly_once", "soak_tx": "transactional"}
UNCHANGED = "<unchanged>"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Stack:
    def __init__(self, state):
        self.state = state
        self.env = {}
        with open(os.path.join(state, "stack.env")) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    k, v = line.rstrip("\n").split("=", 1)
                    self.env[k] = v.strip("'\"")
        self.bin = self.env["WALCAST_PG_BIN"]

    def psql(self, sql, check=True, timeout=600):
        cmd = [os.path.join(self.bin, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
               "-h", "127.0.0.1", "-p", self.env["WALCAST_PG_PORT"], "-U", "postgres", "-d", "postgres"]
        r = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()[:500]}")
        return r.stdout.strip() if r.returncode == 0 else None

    def as_pg(self, args):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + args
        return args

    def restart_postgres(self):
        subprocess.run(self.as_pg([os.path.join(self.bin, "pg_ctl"), "-D", self.env["WALCAST_PG_DATA"],
                                   "-m", "fast", "-w", "-t", "60", "restart", "-l", self.env["WALCAST_PG_LOG"]]),
                       capture_output=True, timeout=120)

    def stop_kafka(self):
        with open(os.path.join(self.state, "kafka", "kafka.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, 15)
        for _ in range(300):
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.1)
        os.kill(pid, 9)

    def start_kafka(self, repo):
        subprocess.run([os.path.join(repo, "deploy/local/up"), "--services", "kafka", "--state-dir", self.state],
                       capture_output=True, timeout=180)


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL whose connections can be cut."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.live = set()
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, server)
            with self.lock:
                self.live.add(pair)
            threading.Thread(target=self.pump, args=(client, server, pair), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, pair), daemon=True).start()

    def pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            self.live.discard(pair)

    def cut(self):
        with self.lock:
            pairs = list(self.live)
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(pairs)


class Walcast:
    """One connector's walcast process, started again whenever it exits."""

    def __init__(self, binary, name, file, logdir):
        self.binary, self.name, self.file = binary, name, file
        self.log = os.path.join(logdir, f"{name}.log")
        self.proc = None
        self.exits = []
        self.rss = []  # (seconds since start, MiB)
        self.peak = 0.0
        self.lock = threading.Lock()
        self.stopping = False
        self.start()

    def start(self):
        out = open(self.log, "a")
        self.proc = subprocess.Popen([self.binary, "--log-format", "json", "run", self.file],
                                     stdout=subprocess.DEVNULL, stderr=out)

    def kill9(self):
        with self.lock:
            self.proc.kill()
            self.proc.wait()
            self.start()

    def supervise(self, t0):
        while not self.stopping:
            with self.lock:
                code = self.proc.poll()
                if code is not None and not self.stopping:
                    self.exits.append((round(time.time() - t0), code, last_error(self.log)))
                    time.sleep(1)
                    self.start()
                else:
                    try:
                        with open(f"/proc/{self.proc.pid}/status") as f:
                            for line in f:
                                if line.startswith("VmHWM:"):
                                    mib = int(line.split()[1]) / 1024
                                    self.peak = max(self.peak, mib)
                                if line.startswith("VmRSS:"):
                                    rss = int(line.split()[1]) / 1024
                                    if not self.rss or time.time() - t0 - self.rss[-1][0] >= 60:
                                        self.rss.append((round(time.time() - t0), round(rss, 1)))
                    except OSError:
                        pass
            time.sleep(0.5)

    def stop(self):
        self.stopping = True
        with self.lock:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return None


def last_error(path):
    try:
        with open(path) as f:
            lines = f.readlines()[-200:]
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") == "ERROR":
            return entry.get("message", "")[:300]
    return ""


class Workload:
    """About `rate` row changes a second in transactions of about 50, until `deadline`."""

    def __init__(self, stack, rate, rng, deadline):
        self.stack, self.rate, self.rng, self.deadline = stack, rate, rng, deadline
        self.next_item = 1
        self.next_order = 1
        self.next_event = 1
        self.transactions = 0
        self.failed_chunks = 0
        self.big = 0
        self.extra = 0  # the column shapes has now (0: none)

    def doc(self):
        # Incompressible text over the TOAST threshold.
        return "".join(f"{self.rng.getrandbits(128):032x}" for _ in range(80))

    def transaction(self):
        r = self.rng
        i, o = self.next_item, self.next_order
        self.next_item += 20
        self.next_order += 10
        a = r.randrange(1, 9990)
        parts = ["BEGIN;",
                 f"INSERT INTO items SELECT g, {o} + g % 10, g % 7, 'item ' || g FROM generate_series({i}, {i + 19}) g;",
                 f"UPDATE accounts SET balance = balance + 1 WHERE id BETWEEN {a} AND {a + 9};"]
        docs = ", ".join(
            f"({o + k}, {a}, 'new', {repr(self.doc()) if k == 0 else 'NULL'})" for k in range(10))
        parts.append(f"INSERT INTO orders VALUES {docs};")
        if o > 50:
            p = r.randrange(max(1, o - 2000), o - 10)
            # Touches status only: the TOASTed doc stays unchanged.
            parts.append(f"UPDATE orders SET status = 'paid {self.transactions}' WHERE id BETWEEN {p} AND {p + 4};")
        if i > 200:
            d = r.randrange(max(1, i - 4000), i - 100)
            parts.append(f"DELETE FROM items WHERE id BETWEEN {d} AND {d + 4};")
        parts.append(f"UPDATE shapes SET v = v + 1 WHERE id = {r.randrange(1, 1000)};")
        if self.transactions % 10 == 0:
            k = r.randrange(1, 9990)
            # A key change (and back, later, for another pick).
            parts.append(f"UPDATE accounts SET id = CASE WHEN id > 1000000000 THEN id - 1000000000 ELSE id + 1000000000 END "
                         f"WHERE id IN ({k}, {k + 1000000000});")
        if self.transactions % 5 == 0:
            e = self.next_event
            self.next_event += 3
            parts.append(f"INSERT INTO events SELECT g, 'small', md5(g::text) FROM generate_series({e}, {e + 2}) g;")
        parts.append("COMMIT;")
        self.transactions += 1
        return "\n".join(parts)

    def big_transaction(self):
        e = self.next_event
        self.next_event += 100000
        self.big += 1
        return (f"BEGIN; INSERT INTO events SELECT g, 'big', repeat(md5(g::text), 4) "
                f"FROM generate_series({e}, {e + 99999}) g; COMMIT;")

    def shape_change(self):
        if self.extra:
            sql = f"ALTER TABLE shapes DROP COLUMN extra_{self.extra};"
            self.extra = 0
        else:
            self.extra = self.transactions
            sql = (f"ALTER TABLE shapes ADD COLUMN extra_{self.extra} int; "
                   f"UPDATE shapes SET extra_{self.extra} = id WHERE id <= 20;")
        return sql

    def run(self, t0, faults_until):
        per_chunk = max(1, self.rate // 50)  # transactions per second
        next_big = t0 + 60 + self.rng.uniform(0, 120)
        next_shape = t0 + 90
        while time.time() < self.deadline:
            start = time.time()
            sql = "\n".join(self.transaction() for _ in range(per_chunk))
            if start >= next_big and start < faults_until:
                sql += "\n" + self.big_transaction()
                next_big = start + 180 + self.rng.uniform(0, 120)
            if start >= next_shape:
                sql += "\n" + self.shape_change()
                next_shape = start + 150 + self.rng.uniform(0, 60)
            try:
                if self.stack.psql(sql, check=False, timeout=300) is None:
                    self.failed_chunks += 1
                    time.sleep(1)
            except subprocess.TimeoutExpired:
                self.failed_chunks += 1
            elapsed = time.time() - start
            if elapsed < 1:
                time.sleep(1 - elapsed)


def fault_loop(rng, stack, proxy, walcasts, registry, repo, t0, until, record):
    while True:
        wait = rng.uniform(20, 60)
        if time.time() + wait >= until:
            return
        time.sleep(wait)
        kind = rng.choice(["kill", "kill", "postgres", "broker", "registry", "cut"])
        at = round(time.time() - t0)
        if kind == "kill":
            w = rng.choice(walcasts)
            w.kill9()
            what = f"kill -9 {w.name}"
        elif kind == "postgres":
            stack.restart_postgres()
            what = "PostgreSQL restarted"
        elif kind == "broker":
            down = rng.uniform(5, 20)
            stack.stop_kafka()
            time.sleep(down)
            stack.start_kafka(repo)
            what = f"broker stopped for {down:.0f} s"
        elif kind == "registry":
            down = rng.uniform(5, 20)
            registry.stop()
            time.sleep(down)
            registry.start()
            what = f"registry stopped for {down:.0f} s"
        else:
            n = proxy.cut()
            what = f"{n} PostgreSQL connections cut"
        record.append((at, what, time.time()))
        log(f"fault at {at} s: {what}")


class Registry:
    def __init__(self, binary, port, data):
        self.binary, self.port, self.data = binary, port, data
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.binary, "registry", "--listen", f"127.0.0.1:{self.port}",
                                      "--data-dir", self.data], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def split_columns(text):
    """`a[int]:1 b[text]:'x y'` -> {a: '1', b: 'x y'} (values as text, None for null)."""
    out = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        br = text.index("[", i)
        name = text[i:br]
        colon = text.index("]:", br)
        i = colon + 2
        if text.startswith("'", i):
            j = i + 1
            parts = []
            while True:
                q = text.index("'", j)
                parts.append(text[j:q])
                if text.startswith("''", q):
                    parts.append("'")
                    j = q + 2
                else:
                    i = q + 1
                    break
            value = "".join(parts)
        else:
            sp = text.find(" ", i)
            sp = n if sp < 0 else sp
            value = text[i:sp]
            i = sp
            value = None if value == "null" else (UNCHANGED if value == "unchanged-toast-datum" else value)
        out[name] = value
    return out


def digest(op, values):
    return hash((op, tuple(sorted(values.items()))))


def oracle(stack, path):
    """Per (table, key): the digests of the changes a consumer must see, in order."""
    changes = collections.defaultdict(list)
    count = 0
    cmd = [os.path.join(stack.bin, "psql"), "-X", "-q", "-At", "-v", "FETCH_COUNT=20000",
           "-h", "127.0.0.1", "-p", stack.env["WALCAST_PG_PORT"], "-U", "postgres", "-d", "postgres", "-c",
           "SELECT data FROM pg_logical_slot_peek_changes('soak_oracle', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as p:
        for line in p.stdout:
            if not line.startswith("table public."):
                continue
            head, _, rest = line.rstrip("\n").partition(": ")
            table = head[len("table public."):]
            kind, _, cols = rest.partition(": ")
            if kind == "INSERT":
                v = split_columns(cols)
                key = int(v.pop("id"))
                changes[(table, key)].append(digest("c", v))
            elif kind == "UPDATE":
                if cols.startswith("old-key: "):
                    old, _, new = cols[len("old-key: "):].partition(" new-tuple: ")
                    old_key = int(split_columns(old)["id"])
                    v = split_columns(new)
                    key = int(v.pop("id"))
                    changes[(table, old_key)] += [digest("d", {}), digest("tombstone", {})]
                    changes[(table, key)].append(digest("c", v))
                else:
                    v = split_columns(cols)
                    key = int(v.pop("id"))
                    changes[(table, key)].append(digest("u", v))
            elif kind == "DELETE":
                key = int(split_columns(cols)["id"])
                changes[(table, key)] += [digest("d", {}), digest("tombstone", {})]
            else:
                continue
            count += 1
    return changes, count


def consumed(binary, prefix, bootstrap, registry):
    """Per (table, key): the digests of the records in the topics, in partition order."""
    changes = collections.defaultdict(list)
    records = 0
    for table in TABLES:
        cmd = [binary, "tail", f"{prefix}.public.{table}", "--from-beginning", "--timeout", "20s",
               "--bootstrap-servers", bootstrap, "--registry", registry]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
            for line in p.stdout:
                r = json.loads(line)
                if "error" in r:
                    raise RuntimeError(f"{prefix}.{table}: undecodable record: {line[:300]}")
                key = int(r["key"]["id"])
                records += 1
                value = r["value"]
                if value is None:
                    changes[(table, key)].append(digest("tombstone", {}))
                    continue
                op = value["op"]
                v = {}
                if op in ("c", "u", "r"):
                    for name, x in value["after"].items():
                        if name == "id":
                            continue
                        if x == "__debezium_unavailable_value":
                            x = UNCHANGED
                        v[name] = None if x is None else str(x)
                changes[(table, key)].append(digest(op, v if op != "d" else {}))
    return changes, records


def compare(want, got):
    lost = repeated = reordered = 0
    examples = []
    for key in set(want) | set(got):
        w, g = want.get(key, []), got.get(key, [])
        if w == g:
            continue
        cw, cg = collections.Counter(w), collections.Counter(g)
        miss = sum((cw - cg).values())
        extra = sum((cg - cw).values())
        lost += miss
        repeated += extra
        if not miss and not extra:
            reordered += 1
        if len(examples) < 10:
            examples.append(f"{key}: expected {len(w)} changes, got {len(g)} (lost {miss}, repeated {extra})")
    return lost, repeated, reordered, examples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    stack = Stack(args.state)
    rng = random.Random(args.seed)
    logdir = os.path.join(args.state, "soak")
    os.makedirs(logdir, exist_ok=True)

    stack.psql("ALTER SYSTEM SET logical_decoding_work_mem = '1MB'; SELECT pg_reload_conf();")
    stack.psql("""
        CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint, owner text);
        CREATE TABLE orders (id bigint PRIMARY KEY, account bigint, status text, doc text);
        CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint, qty int, name text);
        CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload text);
        CREATE TABLE shapes (id bigint PRIMARY KEY, v int);
        ALTER TABLE orders ALTER COLUMN doc SET STORAGE EXTERNAL;
        INSERT INTO accounts SELECT g, 0, 'owner ' || g FROM generate_series(1, 10000) g;
        INSERT INTO shapes SELECT g, 0 FROM generate_series(1, 1000) g;
    """)
    registry_port = free_port()
    registry = Registry(args.bin, registry_port, os.path.join(args.state, "soak-registry"))
    proxy = Proxy(int(stack.env["WALCAST_PG_PORT"]))
    bootstrap = stack.env["WALCAST_KAFKA_BOOTSTRAP"]
    walcasts = []
    for name, mode in MODES.items():
        path = os.path.join(logdir, f"{name}.toml")
        tables = "".join(f'[tables."public.{t}"]\n' for t in TABLES)
        with open(path, "w") as f:
            f.write(f"""name = "{name}"
[source]
host = "127.0.0.1"
port = {proxy.port}
dbname = "postgres"
user = "postgres"
sslmode = "disable"
snapshot_mode = "never"
spool_dir = "{logdir}/spool-{name}"
[kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "{name}"
partitions = 2
[registry]
url = "http://127.0.0.1:{registry_port}"
[metrics]
enabled = false
[delivery]
mode = "{mode}"
{tables}""")
        subprocess.run([args.bin, "setup", path], check=True, capture_output=True)
        walcasts.append(Walcast(args.bin, name, path, logdir))
    for name in MODES:
        wait_until(lambda: stack.psql(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walcast_{name}' "
            "AND active AND confirmed_flush_lsn IS NOT NULL") == "1", 120, f"walcast_{name} streams")
    stack.psql("SELECT pg_create_logical_replication_slot('soak_oracle', 'test_decoding')")

    t0 = time.time()
    deadline = t0 + args.minutes * 60
    faults = []
    for w in walcasts:
        threading.Thread(target=w.supervise, args=(t0,), daemon=True).start()
    workload = Workload(stack, args.rate, random.Random(args.seed + 1), deadline)
    log(f"soak: {args.minutes} min, about {args.rate} changes/s, seed {args.seed}")
    fault_thread = threading.Thread(
        target=fault_loop, args=(rng, stack, proxy, walcasts, registry, args.repo, t0, deadline - 10, faults))
    fault_thread.start()
    workload.run(t0, deadline - 60)
    workload_done = time.time()
    fault_thread.join()
    last_fault = faults[-1][2] if faults else t0
    end_lsn = stack.psql("SELECT pg_current_wal_lsn()")
    caught = {}
    for name in MODES:
        ok = wait_until(lambda: stack.psql(
            f"SELECT confirmed_flush_lsn >= '{end_lsn}' FROM pg_replication_slots WHERE slot_name = 'walcast_{name}'",
            check=False) == "t", 600, None)
        caught[name] = (round(time.time() - workload_done), round(time.time() - last_fault)) if ok else None
    log(f"workload: {workload.transactions} transactions attempted, {workload.big} large streamed ones, "
        f"{workload.failed_chunks} one-second chunks failed (PostgreSQL restarting)")

    want, oracle_count = oracle(stack, logdir)
    log(f"oracle: {oracle_count} changes on {len(want)} keys")
    failed = False
    for w in walcasts:
        stop = w.stop()
        got, records = consumed(args.bin, w.name, bootstrap, f"http://127.0.0.1:{registry_port}")
        lost, repeated, reordered, examples = compare(want, got)
        verdict = "EQUAL" if not (lost or repeated or reordered) else "DIFFERENT"
        failed |= verdict != "EQUAL"
        log(f"{w.name} ({MODES[w.name]}): {records} records; {verdict} to the oracle: {lost} lost, "
            f"{repeated} repeated, {reordered} keys reordered; peak RSS {w.peak:.1f} MiB; "
            f"slot confirmed at the WAL's end (s after the workload ended, after the last fault): {caught[w.name]}; "
            f"exits by itself {w.exits}; clean stop {stop}")
        log(f"{w.name} RSS (s, MiB) every minute: {w.rss}")
        for e in examples:
            log(f"  {e}")
    log(f"faults ({len(faults)}): " + "; ".join(f"{at}s {what}" for at, what, _ in faults))
    registry.stop()
    sys.exit(1 if failed else 0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(check, limit, what):
    started = time.time()
    while time.time() - started < limit:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - PostgreSQL may be restarting
            pass
        time.sleep(1)
    if what:
        raise RuntimeError(f"timed out: {what}")
    return False


if __name__ == "__main__":
    main()
