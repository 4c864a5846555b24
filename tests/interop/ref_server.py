"""A server on the reference implementation (MpGameServer 0.2.4), for the
interop harness. Written against the library's public API only.

    python ref_server.py --port P --key root.key --seconds S [--mode echo|digest] [--kick-after T]

Binds 127.0.0.1:P (nothing else) and serves for at most S seconds; SIGTERM
stops it earlier. One line per event on stdout, for the harness to check:

    CONNECT <token> <host:port>
    MSG <token> <length> <sha256 hex of the message>
    KICK <token>
    DISCONNECT <token> <host:port> received=N dropped=N acked=N timeouts=N
    STOPPED

Modes: `echo` sends every message back unchanged (RetryMode.NONE, the
server-side default); `digest` answers every message with the 32-byte
SHA-256 of what it received (RetryMode.RETRY_ON_TIMEOUT: a single datagram,
which the reference retransmits correctly), so a client can check that a
message arrived intact without the reference sending it back (it cannot
send some sizes, nor retransmit fragments: docs/PROTOCOL.md §15 rule 3,
§16 bugs 1-3). `--kick-after T` disconnects a client from the server side
once T seconds have passed since its last message.
"""

import argparse
import hashlib
import signal
import sys
import threading
import time

from mpgameserver import (EllipticCurvePrivateKey, EventHandler, RetryMode,
                          ServerContext, TwistedServer)


def say(*parts):
    print(*parts, flush=True)


def peer(client):
    host, port = client.addr[0], client.addr[1]
    return "%s:%d" % (host, port)


class Handler(EventHandler):
    def __init__(self, mode, kick_after):
        self.mode = mode
        self.kick_after = kick_after
        self.last_message = {}  # token -> (client, time of its last message)
        self.lock = threading.Lock()

    def connect(self, client):
        say("CONNECT", client.token, peer(client))

    def disconnect(self, client):
        with self.lock:
            self.last_message.pop(client.token, None)
        s = client.stats
        say("DISCONNECT", client.token, peer(client),
            "received=%d dropped=%d acked=%d timeouts=%d" % (s.received, s.dropped, s.acked, s.timeouts))

    def handle_message(self, client, seqnum, msg=b""):
        say("MSG", client.token, len(msg), hashlib.sha256(msg).hexdigest())
        if self.mode == "echo":
            client.send(msg, retry=RetryMode.NONE)
        else:
            client.send(hashlib.sha256(msg).digest(), retry=RetryMode.RETRY_ON_TIMEOUT)
        if self.kick_after is not None:
            with self.lock:
                self.last_message[client.token] = (client, time.monotonic())

    def update(self, delta_t):
        if self.kick_after is None:
            return
        now = time.monotonic()
        with self.lock:
            due = [c for c, t in self.last_message.values() if now - t >= self.kick_after]
            for c in due:
                del self.last_message[c.token]
        for client in due:
            say("KICK", client.token)
            client.disconnect()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True, help="PEM private key (mpcli genkey or our keygen)")
    ap.add_argument("--seconds", type=float, required=True, help="serve at most this long")
    ap.add_argument("--mode", choices=["echo", "digest"], default="echo")
    ap.add_argument("--kick-after", type=float, default=None)
    args = ap.parse_args()

    with open(args.key) as f:
        key = EllipticCurvePrivateKey.fromPEM(f.read())
    ctxt = ServerContext(Handler(args.mode, args.kick_after), key)
    server = TwistedServer(ctxt, ("127.0.0.1", args.port), install_signals=False)

    stopping = threading.Event()

    def stop():
        if not stopping.is_set():
            stopping.set()
            server.stop()

    def stop_later():
        time.sleep(args.seconds)
        stop()

    threading.Thread(target=stop_later, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop, daemon=True).start())
    server.run()
    say("STOPPED")


if __name__ == "__main__":
    sys.exit(main())
