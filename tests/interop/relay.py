"""A UDP relay on loopback that can drop datagrams and checks every datagram
header it sees, for the interop harness.

    python relay.py --listen-port P --server-port S [--drop 0.1] [--seed 7] [--keep-first N] --seconds T

Receives on 127.0.0.1:P, forwards to 127.0.0.1:S from a second socket, and
sends the server's answers back to the client that last sent (one client at
a time; a new client address starts a new session). Each direction drops a
fraction of datagrams, decided by its own seeded random stream, so the n-th
datagram in a direction is always dropped or always kept for a given seed.
`--keep-first N` never drops the first N datagrams of each direction: the
reference client sends its handshake messages only once
(docs/PROTOCOL.md §16 bug 9). Nothing is reordered, duplicated or changed.

Every datagram, dropped or not, is checked against docs/PROTOCOL.md (the
payload of encrypted ones cannot be read): §2 header and exact length, §3
CRC for hellos, §5 count and type, §6 packet seq (never 0, +1 on the ring per
datagram), rule 2 size, and that `ack` and every `ack_bits` bit name a
datagram the relay actually delivered in the other direction (§7.2). Stops
after T seconds or on SIGTERM, and prints:

    RELAY c2s forwarded=N dropped=N s2c forwarded=N dropped=N
    WIRE c2s datagrams=N anomalies=N [first anomalies]
    WIRE s2c datagrams=N anomalies=N [first anomalies]
"""

import argparse
import random
import selectors
import signal
import socket
import struct
import sys
import time
import zlib

HEADER = struct.Struct(">4sLHHBHBL")
MAGIC = {"c2s": b"FSOS", "s2c": b"FSOC"}
MAX_SIZE = 1472  # MTU 1500 - 28


def ring_next(x):
    return 1 if x == 65535 else x + 1


def ring_back(x, d):
    """x moved back d steps on the 1..65535 ring."""
    return (x - 1 - d) % 65535 + 1


class Wire:
    """Header checks of one direction of one session."""

    def __init__(self, direction):
        self.direction = direction
        self.datagrams = 0
        self.anomalies = 0
        self.first = []
        self.last_seq = None
        self.delivered = set()  # seqs of this direction that the relay forwarded

    def bad(self, what):
        self.anomalies += 1
        if len(self.first) < 4:
            self.first.append("#%d %s" % (self.datagrams, what))

    def check(self, data, other):
        self.datagrams += 1
        if len(data) < HEADER.size:
            return self.bad("short datagram (%d B)" % len(data))
        magic, ctime, seq, ack, typ, length, count, ack_bits = HEADER.unpack_from(data)
        if magic != MAGIC[self.direction]:
            self.bad("magic %r" % magic)
        if typ > 7:
            return self.bad("type %d" % typ)
        crc = typ in (1, 2)
        want = HEADER.size + length + (4 if crc else 16)
        if len(data) != want:
            self.bad("length %d B, header says %d B" % (len(data), want))
        if len(data) > MAX_SIZE:
            self.bad("%d B, over %d" % (len(data), MAX_SIZE))
        if crc:
            body = data[:HEADER.size + length]
            if count != 1:
                self.bad("hello with count %d" % count)
            if len(data) >= want and struct.unpack_from(">L", data, HEADER.size + length)[0] != zlib.crc32(body):
                self.bad("bad CRC")
        if count == 0 and (typ != 4 or length != 0):
            self.bad("count 0 with type %d, length %d" % (typ, length))
        if count == 1 and length < 2 or count >= 2 and length < 5 * count:
            self.bad("count %d in %d payload bytes" % (count, length))
        if abs(ctime - time.time()) > 10:
            self.bad("ctime %d is %.0f s off the clock" % (ctime, ctime - time.time()))
        if seq == 0:
            self.bad("seq 0")
        elif self.last_seq is not None and seq != ring_next(self.last_seq):
            self.bad("seq %d after %d" % (seq, self.last_seq))
        self.last_seq = seq
        if ack != 0:
            if ack not in other.delivered:
                self.bad("acks seq %d, which was not delivered" % ack)
            for d in range(1, 33):
                if ack_bits & (0x80000000 >> (d - 1)) and ring_back(ack, d) not in other.delivered:
                    self.bad("ack_bits acks seq %d, which was not delivered" % ring_back(ack, d))
        elif ack_bits:
            self.bad("ack 0 with ack_bits %08X" % ack_bits)
        return seq

    def summary(self):
        first = (" [" + "; ".join(self.first) + "]") if self.first else ""
        return "WIRE %s datagrams=%d anomalies=%d%s" % (self.direction, self.datagrams, self.anomalies, first)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--server-port", type=int, required=True)
    ap.add_argument("--drop", type=float, default=0.0, help="fraction dropped in each direction")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep-first", type=int, default=0,
                    help="datagrams never dropped at the start of each direction")
    ap.add_argument("--seconds", type=float, required=True)
    args = ap.parse_args()

    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", args.listen_port))
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", 0))
    for s in (front, back):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
    server = ("127.0.0.1", args.server_port)

    rng = {"c2s": random.Random("%d/c2s" % args.seed), "s2c": random.Random("%d/s2c" % args.seed)}
    count = {k: [0, 0] for k in rng}  # forwarded, dropped
    wire = {k: Wire(k) for k in rng}
    totals = {k: [0, 0] for k in rng}  # datagrams, anomalies of finished sessions
    firsts = {k: [] for k in rng}
    client = None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    sel = selectors.DefaultSelector()
    sel.register(front, selectors.EVENT_READ, "c2s")
    sel.register(back, selectors.EVENT_READ, "s2c")
    deadline = time.monotonic() + args.seconds
    while not stop and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.05):
            direction = key.data
            other = "s2c" if direction == "c2s" else "c2s"
            while True:
                try:
                    data, addr = key.fileobj.recvfrom(4096)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionRefusedError:
                    continue
                if direction == "c2s":
                    if addr != client:
                        if client is not None:  # a new session: keep the old one's counts
                            for k in wire:
                                totals[k][0] += wire[k].datagrams
                                totals[k][1] += wire[k].anomalies
                                firsts[k] += wire[k].first
                            wire = {k: Wire(k) for k in rng}
                        client = addr
                    target, out = server, back
                else:
                    if addr != server or client is None:
                        continue
                    target, out = client, front
                seq = wire[direction].check(data, wire[other])
                seen = sum(count[direction])
                if seen >= args.keep_first and rng[direction].random() < args.drop:
                    count[direction][1] += 1
                    continue
                count[direction][0] += 1
                if seq is not None:
                    wire[direction].delivered.add(seq)
                try:
                    out.sendto(data, target)
                except OSError:
                    pass
    print("RELAY c2s forwarded=%d dropped=%d s2c forwarded=%d dropped=%d"
          % (count["c2s"][0], count["c2s"][1], count["s2c"][0], count["s2c"][1]), flush=True)
    for k in ("c2s", "s2c"):
        w = wire[k]
        w.datagrams += totals[k][0]
        w.anomalies += totals[k][1]
        w.first = (firsts[k] + w.first)[:4]
        print(w.summary(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
