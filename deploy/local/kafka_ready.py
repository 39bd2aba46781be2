#!/usr/bin/env python3
"""deploy/local/kafka_ready.py: is a Kafka broker up and serving clients?

Sends one real Kafka Metadata request (API key 3, version 4: the oldest version
Kafka 4.x still accepts after KIP-896 removed v0-v3, and non-flexible, so no tagged
fields) over a raw TCP socket, for no topics, and succeeds when the response lists
at least one broker. A KRaft broker only lists itself once it is registered and
unfenced, so this is a fair "ready for clients" test.

    kafka_ready.py HOST:PORT [--timeout SECONDS] [--wait SECONDS] [-q]

--timeout  per-attempt socket timeout (default 2 s)
--wait     keep retrying for up to this long (default 0: one attempt)
-q         print nothing on success

Exit status 0 when ready (prints the brokers, cluster id and controller id),
1 otherwise (prints why on stderr). Python 3 standard library only.
"""

import argparse
import socket
import struct
import sys
import time

API_METADATA = 3
VERSION = 4
CLIENT_ID = b"walcast-kafka-ready"


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated Metadata response")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int8(self):
        return struct.unpack(">b", self.take(1))[0]

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def nullable_string(self):
        n = self.int16()
        return None if n < 0 else self.take(n).decode("utf-8", "replace")


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def metadata(host, port, timeout):
    correlation_id = 0x77A1
    # Request header v1: api_key, api_version, correlation_id, client_id (string).
    header = struct.pack(">hhih", API_METADATA, VERSION, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    # Metadata v4 body: topics = [] (no topics; -1 would mean all), allow_auto_topic_creation = false.
    body = struct.pack(">ib", 0, 0)
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        if size <= 0 or size > 64 << 20:
            raise ValueError(f"implausible response size {size}")
        r = Reader(recv_exact(sock, size))
    # Response header v0: correlation_id. Body v4: throttle_time_ms, brokers, cluster_id, controller_id, ...
    if r.int32() != correlation_id:
        raise ValueError("correlation id mismatch (not a Kafka broker?)")
    r.int32()  # throttle_time_ms
    brokers = []
    for _ in range(r.int32()):
        node_id = r.int32()
        bhost = r.nullable_string()
        bport = r.int32()
        r.nullable_string()  # rack
        brokers.append((node_id, bhost, bport))
    cluster_id = r.nullable_string()
    controller_id = r.int32()
    return brokers, cluster_id, controller_id


def main():
    ap = argparse.ArgumentParser(description="Succeed when a Kafka broker answers Metadata with >= 1 broker.")
    ap.add_argument("address", help="HOST:PORT of the broker (PLAINTEXT listener)")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--wait", type=float, default=0.0)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    host, _, port = args.address.rpartition(":")
    if not host or not port.isdigit():
        ap.error("address must be HOST:PORT")
    deadline = time.monotonic() + args.wait
    while True:
        try:
            brokers, cluster_id, controller_id = metadata(host.strip("[]"), int(port), args.timeout)
            if brokers:
                if not args.quiet:
                    listed = ", ".join(f"{n}@{h}:{p}" for n, h, p in brokers)
                    print(f"kafka ready at {args.address}: brokers [{listed}], "
                          f"cluster_id={cluster_id}, controller_id={controller_id}")
                return 0
            why = "Metadata response lists no brokers yet"
        except (OSError, ValueError, struct.error) as e:
            why = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            print(f"kafka not ready at {args.address}: {why}", file=sys.stderr)
            return 1
        time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main())
