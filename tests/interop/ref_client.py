"""A client on the reference implementation (MpGameServer 0.2.4), for the
interop harness. Written against the library's public API only.

    python ref_client.py --port P --pub root.pub --seconds S [--sizes 0,1,100] [--patterns 1433,2451]
                         [--burst N] [--idle S] [--end disconnect|wait-close]

Connects to 127.0.0.1:P, pinning the server's public key, and prints one line
per check on stdout:

    CONNECTED <token>
    ECHO <size> ok|FAIL <seconds> [why]      (twice per size: sent, its echo checked byte for byte)
    PATTERN <size> ok|FAIL <seconds> [why]   ("PATTERN <size> <seed>" sent, the pattern checked)
    BURST <n> ok|FAIL <seconds> [why]        (n small messages sent at once, n echoes checked)
    IDLE <seconds> ok|FAIL                   (nothing sent for that long; the connection must survive)
    EXTRA <count>                            (replies that matched nothing asked for: duplicates)
    DISCONNECT acked=True|False              (--end disconnect: ours, and whether the server acked it;
                                              not part of RESULT)
    CLOSED status=<ConnectionStatus> after=<seconds>   (--end wait-close: the server ended it)
    STATS received=N dropped=N acked=N timeouts=N
    RESULT ok|FAIL

Exits 0 only if every check passed, within S seconds in all. Messages go
out with retry=RetryMode.RETRY_ON_TIMEOUT, passed explicitly (the default
differs from the documentation, §16 bug 5); the reference itself sends
fragmented ones only once. The loop calls update() about 200 times per
second: the reference client reads at most one datagram per update()
(docs/PROTOCOL.md §12).
"""

import argparse
import hashlib
import sys
import time

from mpgameserver import ConnectionStatus, EllipticCurvePublicKey, RetryMode, UdpClient

FRAME = 1 / 200


def say(*parts):
    print(*parts, flush=True)


def pattern(size, seed):
    """The bytes examples/echo_server.rs --pattern-requests answers with."""
    step = 0x9E3779B1
    return bytes(((seed + i * step) & 0xFFFFFFFF) >> 24 for i in range(size))


def message(size, n):
    """Content that differs per message and per 1024-byte block."""
    seed = hashlib.sha256(b"interop %d %d" % (size, n)).digest()
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        block += 1
    return bytes(out[:size])


class Session:
    def __init__(self, client, deadline):
        self.client = client
        self.deadline = deadline
        self.inbox = []
        self.ok = True

    def pump(self):
        self.client.update()
        self.inbox.extend(msg for _, msg in self.client.getMessages())
        time.sleep(FRAME)

    def roundtrip(self, kind, label, requests, expected, limit):
        """Sends every request at once, then waits for every expected reply
        (in any order)."""
        for request in requests:
            self.client.send(request, retry=RetryMode.RETRY_ON_TIMEOUT)
        missing = list(expected)
        t0 = time.monotonic()
        end = min(self.deadline, t0 + limit)
        why = "no reply within %.1f s" % (end - t0)
        while time.monotonic() < end:
            self.pump()
            for m in list(missing):
                if m in self.inbox:
                    self.inbox.remove(m)
                    missing.remove(m)
            if not missing:
                why = None
                break
            if not self.client.connected():
                why = "connection ended (status %s)" % self.client.status()
                break
        if why is None:
            say(kind, label, "ok", "%.2f" % (time.monotonic() - t0))
        else:
            wrong = [len(m) for m in self.inbox]
            say(kind, label, "FAIL", "%.2f" % (time.monotonic() - t0), why,
                "(%d of %d replies missing)" % (len(missing), len(expected)),
                "(unmatched replies of sizes %s)" % wrong if wrong else "")
            self.ok = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pub", required=True, help="the server's public key (PEM) to pin")
    ap.add_argument("--seconds", type=float, required=True, help="give up after this long in all")
    ap.add_argument("--sizes", default="", help="comma-separated sizes to send and get echoed")
    ap.add_argument("--patterns", default="", help="comma-separated sizes to request as patterns")
    ap.add_argument("--burst", type=int, default=0, help="small messages to send at once, after the sizes")
    ap.add_argument("--idle", type=float, default=0.0, help="seconds to stay idle, then echo one more message")
    ap.add_argument("--per-message", type=float, default=15.0, help="seconds to wait for each reply")
    ap.add_argument("--end", choices=["disconnect", "wait-close"], default="disconnect")
    args = ap.parse_args()
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]

    start = time.monotonic()
    deadline = start + args.seconds
    with open(args.pub) as f:
        key = EllipticCurvePublicKey.fromPEM(f.read())
    client = UdpClient(key)
    # Timeouts could only be set here, before connect (docs/PROTOCOL.md §16 bug 5); the defaults suit.
    result = []
    client.connect(("127.0.0.1", args.port), callback=result.append)
    while not result and time.monotonic() < deadline:
        client.update()
        time.sleep(FRAME)
    if result != [True]:
        say("CONNECT FAIL", "callback=%s" % (result or "never called"))
        say("RESULT FAIL")
        return 1
    say("CONNECTED", client.token())
    s = Session(client, deadline)

    for size in ints(args.sizes):
        for n in range(2):
            data = message(size, n)
            s.roundtrip("ECHO", size, [data], [data], args.per_message)
    for size in ints(args.patterns):
        seed = 1000 + size
        s.roundtrip("PATTERN", size, [b"PATTERN %d %d" % (size, seed)], [pattern(size, seed)], args.per_message)
    if args.burst:
        # Sizes 16..80: the reference packs many into one datagram, and so does our echo server.
        batch = [message(16 + n % 65, 1000 + n) for n in range(args.burst)]
        s.roundtrip("BURST", args.burst, batch, batch, args.per_message)
    if args.idle:
        t0 = time.monotonic()
        while time.monotonic() < t0 + args.idle and client.connected():
            s.pump()
        alive = client.connected()
        say("IDLE", "%.1f" % args.idle, "ok" if alive else "FAIL (status %s)" % client.status())
        s.ok = s.ok and alive
        if alive:
            data = message(100, 99)
            s.roundtrip("ECHO", "100-after-idle", [data], [data], args.per_message)
    # A short quiet time catches duplicate deliveries (echoes of retransmitted copies).
    quiet = time.monotonic() + 0.3
    while time.monotonic() < quiet and client.connected():
        s.pump()
    say("EXTRA", len(s.inbox))
    s.ok = s.ok and not s.inbox

    if args.end == "disconnect":
        st = client.stats()
        client.disconnect()
        client.waitForDisconnect()
        # Set by the library when the server acknowledges our DISCONNECT.
        say("DISCONNECT", "acked=%s" % bool(client.disconnect_acked))
    else:
        while client.connected() and time.monotonic() < deadline:
            s.pump()
        st = client.stats()
        status = client.status()
        say("CLOSED" if status != ConnectionStatus.CONNECTED else "NOT-CLOSED", "status=%s" % status,
            "after=%.2f" % (time.monotonic() - start))
        # The reference client moves to DISCONNECTING when the server's DISCONNECT arrives.
        s.ok = s.ok and status == ConnectionStatus.DISCONNECTING
        client.forceDisconnect()
    say("STATS", "received=%d dropped=%d acked=%d timeouts=%d" % (st.received, st.dropped, st.acked, st.timeouts))
    say("RESULT", "ok" if s.ok else "FAIL")
    return 0 if s.ok else 1


if __name__ == "__main__":
    sys.exit(main())
