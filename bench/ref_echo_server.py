"""Echo server on the reference implementation (MpGameServer 0.2.4), for
bench/compare.sh. Uses only the library's public API (see
docs/PROTOCOL.md section 18): an EventHandler that sends every message back,
a ServerContext with the root key, and a TwistedServer on 127.0.0.1 that
stops itself after --seconds.

    python bench/ref_echo_server.py --port 15102 --key keys/root.key --seconds 30
"""

import argparse
import os
import threading
import time

from mpgameserver import (
    EllipticCurvePrivateKey,
    EventHandler,
    RetryMode,
    ServerContext,
    TwistedServer,
)

MODES = {
    "none": RetryMode.NONE,
    "best-effort": RetryMode.BEST_EFFORT,
    "retry": RetryMode.RETRY_ON_TIMEOUT,
}


class Echo(EventHandler):
    def __init__(self, retry):
        super().__init__()
        self.retry = retry

    def handle_message(self, client, seqnum, msg):
        client.send(msg, retry=self.retry)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True, help="root private key (PKCS#8 PEM)")
    parser.add_argument("--seconds", type=float, required=True, help="serve this long, then stop")
    parser.add_argument("--tick-hz", type=float, default=60.0, help="server tick rate (default 60)")
    parser.add_argument(
        "--echo", choices=sorted(MODES), default="retry",
        help="retry mode of the echoes (default retry: RETRY_ON_TIMEOUT, like our echo_server's Reliable)",
    )
    parser.add_argument("--pidfile", help="write the process id here once serving")
    args = parser.parse_args()

    with open(args.key) as f:
        key = EllipticCurvePrivateKey.fromPEM(f.read())
    ctxt = ServerContext(Echo(MODES[args.echo]), key)
    ctxt.setInterval(1.0 / args.tick_hz)
    # Loopback only (PROTOCOL.md section 18): never bind every interface.
    server = TwistedServer(ctxt, ("127.0.0.1", args.port), install_signals=False)

    def stop_later():
        time.sleep(args.seconds)
        server.stop()

    threading.Thread(target=stop_later, daemon=True).start()
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(str(os.getpid()))
    print(f"reference echo server on 127.0.0.1:{args.port} for {args.seconds:g} s", flush=True)
    server.run()


if __name__ == "__main__":
    main()
