"""Live interoperability scenarios between this crate's examples and the
reference implementation, MpGameServer 0.2.4 (Python). Run it through
`tests/interop/run.sh`, which prepares the virtual environment and builds the
examples; this file only orchestrates processes and checks what they print.

Every process runs under `timeout`, binds 127.0.0.1 only, and each scenario
is over within SCENARIO_LIMIT seconds. One result line per scenario:

    PASS <name> <what was checked> (<seconds> s)
    FAIL <name> <what went wrong> (<seconds> s)

followed, for a failure, by the tails of its processes' logs (lines starting
with "  | "). The logs of the last run stay in --work/logs/<scenario>/.
The exit status is 1 if any scenario failed.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO_LIMIT = 60.0

# docs/PROTOCOL.md §9 at MTU 1500.
MAX_PAYLOAD_SIZE = 1434
MAX_SINGLE = MAX_PAYLOAD_SIZE - 2  # 1432
REF_FRAGMENT = 1024


def reference_can_send(n):
    """Whether the reference ever delivers a message of n bytes (§15 rule 3,
    §16 bugs 1 and 2): not 1433-1434 (never fragmented, never fit), nor
    1024*k + 1427 (the final 1427-byte chunk never fits)."""
    if n <= MAX_SINGLE:
        return True
    if n <= MAX_PAYLOAD_SIZE:
        return False
    return (n - (MAX_PAYLOAD_SIZE - 7)) % REF_FRAGMENT != 0


# Sizes of issue 5. The reference must echo them, so drop any it cannot send.
ECHO_SIZES = [n for n in [0, 1, 100, 1000, 1432, 5000, 100000] if reference_can_send(n)]
# Sizes only our side can send: 1433, 1434 and 1024*k + 1427 for k = 1, 2, 97.
UNSENDABLE_SIZES = [1433, 1434, 2451, 3475, 100755]
assert not any(reference_can_send(n) for n in UNSENDABLE_SIZES)


class Failure(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failure(why)


class Proc:
    """One process under `timeout`, its stdout and stderr in files."""

    def __init__(self, label, argv, logdir, limit):
        self.label = label
        self.out_path = logdir / (label + ".out")
        self.err_path = logdir / (label + ".err")
        self.argv = [str(a) for a in argv]
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            err.write("$ " + " ".join(self.argv) + "\n")
            err.flush()
            # `timeout` forwards SIGTERM to its child; the session makes a
            # last-resort SIGKILL of the whole group possible.
            self.p = subprocess.Popen(
                ["timeout", "-k", "3", "%.1f" % max(limit, 1.0)] + self.argv,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)

    def out(self):
        return self.out_path.read_text(errors="replace")

    def err(self):
        return self.err_path.read_text(errors="replace")

    def running(self):
        return self.p.poll() is None

    def wait(self, seconds):
        try:
            return self.p.wait(timeout=max(seconds, 0.1))
        except subprocess.TimeoutExpired:
            return None

    def wait_for(self, pattern, seconds):
        """The first match of `pattern` in stdout, waiting up to `seconds`."""
        end = time.monotonic() + seconds
        while True:
            m = re.search(pattern, self.out(), re.M)
            if m or time.monotonic() >= end or not self.running():
                return m or re.search(pattern, self.out(), re.M)
            time.sleep(0.02)

    def stop(self):
        if self.running():
            self.p.send_signal(signal.SIGTERM)
            if self.wait(5) is None:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        return self.p.returncode

    def tail(self, n=12):
        lines = []
        for path in (self.out_path, self.err_path):
            text = path.read_text(errors="replace").splitlines()
            lines += ["%s%s: %s" % (self.label, path.suffix, l) for l in text[-n:]]
        return lines


class Scenario:
    """The processes of one scenario, all stopped when it ends."""

    def __init__(self, env, name):
        self.env = env
        self.name = name
        self.start_time = time.monotonic()
        self.deadline = self.start_time + SCENARIO_LIMIT - 2
        self.logdir = env.work / "logs" / name
        shutil.rmtree(self.logdir, ignore_errors=True)
        self.logdir.mkdir(parents=True)
        self.procs = []

    def remaining(self):
        return self.deadline - time.monotonic()

    def start(self, label, argv, limit=None):
        limit = self.remaining() if limit is None else min(limit, self.remaining())
        p = Proc(label, argv, self.logdir, limit)
        self.procs.append(p)
        return p

    def run(self, label, argv, limit=None):
        """Runs a process to its end; returns it."""
        p = self.start(label, argv, limit)
        p.wait(self.remaining() + 5)
        return p

    def close(self):
        for p in self.procs:
            p.stop()

    # --- the peers ---------------------------------------------------------

    def ref_server(self, key, *extra):
        port = free_port()
        srv = self.start("ref_server", [self.env.python, HERE / "ref_server.py", "--port", port, "--key", key,
                                        "--seconds", "%.1f" % (self.remaining() - 3)] + list(extra))
        check(wait_udp_bound(port, 15, srv), "the reference server did not bind 127.0.0.1:%d" % port)
        return srv, port

    def echo_server(self, key, *extra):
        srv = self.start("echo_server", [self.env.bin / "echo_server", "--bind", "127.0.0.1:0", "--key", key]
                         + list(extra))
        m = srv.wait_for(r"^echo server on 127\.0\.0\.1:(\d+)", 15)
        check(m, "our echo_server did not start")
        return srv, int(m.group(1))

    def relay(self, target_port, drop=0.0, keep_first=0):
        """A relay of ours in front of `target_port`: drops a fraction of the
        datagrams (seed 7) and checks every header (relay.py)."""
        port = free_port()
        relay = self.start("relay", [self.env.python, HERE / "relay.py", "--listen-port", port,
                                     "--server-port", target_port, "--drop", drop, "--seed", 7,
                                     "--keep-first", keep_first, "--seconds", "%.1f" % (self.remaining() - 3)])
        check(wait_udp_bound(port, 15, relay), "the relay did not bind 127.0.0.1:%d" % port)
        return relay, port

    def echo_client(self, port, pub, *extra, label="echo_client"):
        # Our client talks to the reference server here, which speaks only
        # MPGS/1: say so explicitly (echo_client's default is MPGS/2).
        return self.run(label, [self.env.bin / "echo_client", "--server", "127.0.0.1:%d" % port, "--key", pub,
                                "--protocol", "v1"] + [str(a) for a in extra])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_bound(port):
    """Whether something has bound UDP 127.0.0.1:port (read from /proc, so it
    never races the server for the port)."""
    try:
        text = Path("/proc/net/udp").read_text()
    except OSError:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return False
            except OSError:
                return True
    return (" 0100007F:%04X " % port) in text


def wait_udp_bound(port, seconds, proc):
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.running():
        if udp_bound(port):
            return True
        time.sleep(0.02)
    return udp_bound(port)


def no_traceback(proc):
    """The reference must never raise because of what we sent (§16 bug 6)."""
    check("Traceback" not in proc.err(), "%s raised an exception (see %s)" % (proc.label, proc.err_path))


def relay_report(relay, ours):
    """Stops the relay; checks the headers of our side's datagrams (`ours` is
    "c2s" or "s2c"). Returns (c2s forwarded, c2s dropped, s2c forwarded,
    s2c dropped, a note on the reference's side)."""
    relay.stop()
    out = relay.out()
    r = re.search(r"^RELAY c2s forwarded=(\d+) dropped=(\d+) s2c forwarded=(\d+) dropped=(\d+)", out, re.M)
    check(r, "the relay printed no counters")
    wires = {m.group(1): m for m in re.finditer(r"^WIRE (\S+) datagrams=(\d+) anomalies=(\d+)(.*)$", out, re.M)}
    check(len(wires) == 2, "the relay printed no header checks")
    mine = wires[ours]
    theirs = wires["s2c" if ours == "c2s" else "c2s"]
    check(mine.group(3) == "0", "our datagrams broke the wire format: %s anomalies in %s:%s"
          % (mine.group(3), mine.group(2), mine.group(4)))
    note = "headers of our %s datagrams and the reference's %s all valid" % (mine.group(2), theirs.group(2))
    if theirs.group(3) != "0":
        note = ("headers of our %s datagrams valid; the reference's: %s anomalies in %s:%s"
                % (mine.group(2), theirs.group(3), theirs.group(2), theirs.group(4)))
    return tuple(map(int, r.groups())) + (note,)


def reference_events(srv):
    """The reference server's event lines: (kind, fields)."""
    return [line.split() for line in srv.out().splitlines() if line.strip()]


def one_session(srv, count, size):
    """Checks one CONNECT, `count` messages of `size` bytes and one DISCONNECT,
    all from the same address, in the reference server's log."""
    ev = reference_events(srv)
    connects = [e for e in ev if e[0] == "CONNECT"]
    disconnects = [e for e in ev if e[0] == "DISCONNECT"]
    msgs = [e for e in ev if e[0] == "MSG"]
    check(len(connects) == 1, "the reference server saw %d connects, not 1" % len(connects))
    check(len(msgs) == count, "the reference server received %d messages, not %d" % (len(msgs), count))
    bad = [m for m in msgs if int(m[2]) != size]
    check(not bad, "the reference server received sizes %s, not %d" % ([int(m[2]) for m in bad], size))
    # Random contents of 16 B or more never repeat, so equal digests mean a message delivered twice.
    check(size < 16 or len(set(m[3] for m in msgs)) == count, "the reference server delivered a message twice")
    check(len(disconnects) == 1, "the reference server's disconnect callback ran %d times, not once"
          % len(disconnects))
    check(disconnects[0][2] == connects[0][2], "connect and disconnect came from different addresses")
    return disconnects[0]


def client_summary(cli):
    """echo_client's summary line: groups echoed, count, size, p50, p99, late,
    lost, mismatched (late echoes came after echo_client stopped waiting)."""
    out = cli.out()
    m = re.search(r"^echoed (\d+)/(\d+) messages, size (\d+), rtt p50 (\S+) ms p99 (\S+) ms, "
                  r"late (\d+)(?: \([^)]*\))?, lost (\d+), mismatched (\d+)$", out, re.M)
    return m


def expect_all_echoed(cli, count):
    m = client_summary(cli)
    err = cli.err().splitlines()[1:]
    check(m is not None, "echo_client printed no summary (exit %s)%s" % (cli.p.returncode,
                                                                          ": " + err[-1] if err else ""))
    check(m.group(1) == str(count) and m.group(6) == "0" and m.group(8) == "0" and cli.p.returncode == 0,
          "echo_client: %s (exit %s)" % (m.group(0), cli.p.returncode))
    return m


def ending_line(cli):
    lines = cli.out().splitlines()
    return lines[1] if len(lines) > 1 else "(no second line)"


# --- scenarios ----------------------------------------------------------------


def s_keys(sc):
    env = sc.env
    shutil.rmtree(env.keys, ignore_errors=True)
    (env.keys / "ref").mkdir(parents=True)  # mpcli genkey needs the directory
    gen = sc.run("mpcli", [env.mpcli, "genkey", "--name", "root", env.keys / "ref"], 30)
    check(gen.p.returncode == 0 and (env.keys / "ref" / "root.pub").exists(),
          "mpcli genkey failed (exit %s)" % gen.p.returncode)
    ours = sc.run("keygen", [env.bin / "keygen", "--name", "root", env.keys / "rs"], 30)
    m = re.search(r"fingerprint of the public key: ([0-9a-f]{64})", ours.out())
    check(ours.p.returncode == 0 and m, "our keygen failed (exit %s)" % ours.p.returncode)
    ref_rs = sc.run("ref_keys_ours", [env.python, HERE / "ref_keys.py", env.keys / "rs" / "root.key",
                                      env.keys / "rs" / "root.pub"], 30)
    check(ref_rs.p.returncode == 0, "the reference cannot use our keygen's key pair: " + ref_rs.out().strip())
    check(m.group(1) in ref_rs.out(), "the reference computes another public key fingerprint than keygen")
    ref_ref = sc.run("ref_keys_mpcli", [env.python, HERE / "ref_keys.py", env.keys / "ref" / "root.key",
                                        env.keys / "ref" / "root.pub"], 30)
    check(ref_ref.p.returncode == 0, "mpcli's key pair does not check out: " + ref_ref.out().strip())
    return ("mpcli genkey and keygen pairs written; the reference loads keygen's root.key/root.pub "
            "(same public key, signature verifies); our examples load mpcli's files in the scenarios below")


def s_client_echo(size):
    count = 20 if size <= MAX_SINGLE else 10 if size <= 10000 else 3

    def run(sc):
        env = sc.env
        srv, port = sc.ref_server(env.ref_key, "--mode", "echo")
        cli = sc.echo_client(port, env.ref_pub, "--size", size, "--count", count, "--timeout", 15)
        srv.wait_for(r"^DISCONNECT ", 3)  # the reference reports it on its next tick
        srv.stop()
        no_traceback(srv)
        m = expect_all_echoed(cli, count)
        one_session(srv, count, size)
        return ("our client -> reference server: %d/%d messages of %d B echoed intact (rtt p50 %s ms); "
                "reference disconnect callback ran; our client: %s"
                % (count, count, size, m.group(4), ending_line(cli)))
    return run


def s_client_variant(label, count, size, *flags):
    """Our client against the reference echo server with other echo_client
    flags, through a relay that checks every header but drops nothing."""
    def run(sc):
        env = sc.env
        srv, port = sc.ref_server(env.ref_key, "--mode", "echo")
        relay, relay_port = sc.relay(port)
        cli = sc.echo_client(relay_port, env.ref_pub, "--size", size, "--count", count, "--timeout", 15, *flags)
        srv.wait_for(r"^DISCONNECT ", 3)
        *_, note = relay_report(relay, "c2s")
        srv.stop()
        no_traceback(srv)
        m = expect_all_echoed(cli, count)
        one_session(srv, count, size)
        return ("our client -> reference server, %s: %d/%d messages of %d B echoed intact (rtt p50 %s ms); "
                "our client: %s; %s" % (label, count, count, size, m.group(4), ending_line(cli), note))
    return run


def s_client_digest(size):
    count = 5

    def run(sc):
        env = sc.env
        srv, port = sc.ref_server(env.ref_key, "--mode", "digest")
        cli = sc.echo_client(port, env.ref_pub, "--size", size, "--count", count, "--timeout", 15,
                             "--reply", "sha256")
        srv.wait_for(r"^DISCONNECT ", 3)
        srv.stop()
        no_traceback(srv)
        expect_all_echoed(cli, count)
        one_session(srv, count, size)
        return ("our client -> reference server: %d messages of %d B (a size the reference cannot send) "
                "received intact (its SHA-256 replies match); our client: %s" % (count, size, ending_line(cli)))
    return run


def s_client_wrong_key(sc):
    env = sc.env
    srv, port = sc.ref_server(env.ref_key, "--mode", "echo")
    # Pin our keygen's public key while the server signs with mpcli's.
    cli = sc.echo_client(port, env.rs_pub, "--count", 1, "--timeout", 3)
    srv.stop()
    no_traceback(srv)
    err = [l for l in cli.err().splitlines()[1:] if l.strip()]
    check(cli.p.returncode not in (0, None, 124, 137), "echo_client exited %s, not with an error"
          % cli.p.returncode)
    check(err and "does not verify with the pinned key" in err[-1],
          "echo_client's error is not about the key: %s" % (err[-1] if err else "(none)"))
    check(not any(e[0] == "CONNECT" for e in reference_events(srv)),
          "the reference server saw a completed handshake")
    return "refused, exit %d: %s" % (cli.p.returncode, err[-1])


def s_client_kicked(sc):
    env = sc.env
    srv, port = sc.ref_server(env.ref_key, "--mode", "echo", "--kick-after", "0.5")
    cli = sc.echo_client(port, env.ref_pub, "--size", 100, "--count", 3, "--timeout", 10, "--expect-close")
    srv.wait_for(r"^DISCONNECT ", 3)
    srv.stop()
    no_traceback(srv)
    expect_all_echoed(cli, 3)
    ending = ending_line(cli)
    check("closed by the peer" in ending, "our client: %s" % ending)
    ev = reference_events(srv)
    check(any(e[0] == "KICK" for e in ev) and sum(e[0] == "DISCONNECT" for e in ev) == 1,
          "the reference server did not kick and report the client once")
    warnings = sum("unexpected packet" in l for l in srv.err().splitlines())
    return ("reference server disconnected our client (client.disconnect()); our client: %s; "
            "reference logged %d 'unexpected packet' warning(s) for datagrams of ours that crossed "
            "its close" % (ending, warnings))


def stats_of(text):
    m = re.search(r"^STATS received=(\d+) dropped=(\d+) acked=(\d+) timeouts=(\d+)", text, re.M)
    return tuple(int(x) for x in m.groups()) if m else None


def ref_client_ok(cli):
    no_traceback(cli)
    out = cli.out()
    fails = [l for l in out.splitlines() if " FAIL" in l or l.startswith("NOT-")]
    check(not fails and cli.p.returncode == 0,
          "reference client: %s (exit %s)" % ("; ".join(fails or out.strip().splitlines()[-1:]),
                                               cli.p.returncode))
    check(re.search(r"^EXTRA 0$", out, re.M), "the reference client got replies it did not ask for")
    return out


def s_reference_client_echo(sc):
    env = sc.env
    srv, port = sc.echo_server(env.rs_key, "--reference-pacing", "--pattern-requests",
                               "--duration", "%.1f" % (sc.remaining() - 3))
    relay, relay_port = sc.relay(port)
    cli = sc.run("ref_client", [env.python, HERE / "ref_client.py", "--port", relay_port, "--pub", env.rs_pub,
                                "--seconds", "%.1f" % (sc.remaining() - 5),
                                "--sizes", ",".join(map(str, ECHO_SIZES)),
                                "--patterns", ",".join(map(str, UNSENDABLE_SIZES)),
                                "--burst", "100", "--idle", "6"])
    gone = srv.wait_for(r"^disconnect \S+ from \S+ \(([^)]*)\)", 3)
    *_, note = relay_report(relay, "s2c")
    srv.stop()
    out = ref_client_ok(cli)
    check("DISCONNECT acked=True" in out, "the reference client's disconnect was not acknowledged")
    st = stats_of(out)
    check(st and st[1] == 0, "the reference client dropped %s of our datagrams" % (st and st[1]))
    check(gone and gone.group(1) == "closed by the peer",
          "our server did not report the reference client's disconnect: %s" % (gone and gone.group(0)))
    return ("reference client -> our server: echoes of %s B, patterns of %s B (sizes the reference "
            "cannot send) and a burst of 100 small messages checked byte for byte, no duplicates; "
            "6 s idle survived; its disconnect acked; our server: %s; reference dropped 0 of our %d datagrams; %s"
            % (",".join(map(str, ECHO_SIZES)), ",".join(map(str, UNSENDABLE_SIZES)), gone.group(1), st[0], note))


def s_reference_client_lossy(sc):
    env = sc.env
    srv, port = sc.echo_server(env.rs_key, "--reference-pacing", "--pattern-requests",
                               "--duration", "%.1f" % (sc.remaining() - 3))
    relay, relay_port = sc.relay(port, drop=0.1, keep_first=2)
    t0 = time.monotonic()
    # Only sizes the reference retransmits correctly (unfragmented); our server's
    # replies include fragmented patterns, which we retransmit.
    cli = sc.run("ref_client", [env.python, HERE / "ref_client.py", "--port", relay_port, "--pub", env.rs_pub,
                                "--seconds", "%.1f" % (sc.remaining() - 5), "--sizes", "100,1000,1432",
                                "--patterns", "5000,100000", "--burst", "50"])
    took = time.monotonic() - t0
    c2s_fwd, c2s_drop, s2c_fwd, s2c_drop, note = relay_report(relay, "s2c")
    srv.stop()
    ref_client_ok(cli)
    check(c2s_drop > 0 and s2c_drop > 0, "the relay dropped nothing in one direction")
    return ("reference client -> our server through 10%% loss both ways (seed 7, handshake spared: dropped "
            "%d/%d client->server, %d/%d server->client): echoes of 100,1000,1432 B, patterns of 5000 and "
            "100000 B and a burst of 50 intact, no duplicates, in %.1f s; %s"
            % (c2s_drop, c2s_drop + c2s_fwd, s2c_drop, s2c_drop + s2c_fwd, took, note))


def s_reference_client_closed(sc):
    env = sc.env
    # Our server with mpcli's private key; it stops after 4 s and disconnects its clients.
    srv, port = sc.echo_server(env.ref_key, "--reference-pacing", "--duration", "4")
    cli = sc.run("ref_client", [env.python, HERE / "ref_client.py", "--port", port, "--pub", env.ref_pub,
                                "--seconds", "15", "--sizes", "100", "--end", "wait-close"])
    rc = srv.wait(10)
    srv.stop()
    no_traceback(cli)
    out = cli.out()
    check(cli.p.returncode == 0, "reference client: %s" % "; ".join(out.strip().splitlines()[-3:]))
    closed = re.search(r"^CLOSED status=(\S+) after=(\S+)", out, re.M)
    st = stats_of(out)
    check(st and st[1] == 0, "the reference client dropped %s of our datagrams" % (st and st[1]))
    gone = re.search(r"^disconnect \S+ from \S+ \(([^)]*)\)", srv.out(), re.M)
    check(rc == 0 and gone and re.search(r"^stopped: ", srv.out(), re.M),
          "our server did not stop cleanly (exit %s)" % rc)
    check(closed, "the reference client did not report the end of the connection")
    return ("our server (mpcli's root.key) stopped and disconnected the reference client, which moved to "
            "%s; our server: %s" % (closed.group(1), gone.group(1)))


def s_lossy(sc):
    env = sc.env
    srv, port = sc.ref_server(env.ref_key, "--mode", "digest")
    relay, relay_port = sc.relay(port, drop=0.1)
    count = 5
    t0 = time.monotonic()
    cli = sc.echo_client(relay_port, env.ref_pub, "--size", 100000, "--count", count, "--timeout", 25,
                         "--reply", "sha256")
    took = time.monotonic() - t0
    c2s_fwd, c2s_drop, s2c_fwd, s2c_drop, note = relay_report(relay, "c2s")
    srv.stop()
    no_traceback(srv)
    expect_all_echoed(cli, count)
    msgs = [e for e in reference_events(srv) if e[0] == "MSG"]
    check(len(msgs) == count and all(int(m[2]) == 100000 for m in msgs) and len(set(m[3] for m in msgs)) == count,
          "the reference server received %s, not %d distinct 100000-byte messages"
          % ([int(m[2]) for m in msgs], count))
    check(c2s_drop > 0 and s2c_drop > 0, "the relay dropped nothing in one direction")
    return ("%d messages of 100000 B reached the reference server intact through 10%% loss both ways "
            "(seed 7: dropped %d/%d client->server, %d/%d server->client datagrams) in %.1f s; %s"
            % (count, c2s_drop, c2s_drop + c2s_fwd, s2c_drop, s2c_drop + s2c_fwd, took, note))


SCENARIOS = (
    [("keys", s_keys)]
    + [("client-echo-%d" % n, s_client_echo(n)) for n in ECHO_SIZES]
    + [("client-unsendable-%d" % n, s_client_digest(n)) for n in UNSENDABLE_SIZES]
    + [("client-burst", s_client_variant("bursts of 200 (many messages per datagram)", 400, 20, "--burst", 200)),
       ("client-idle", s_client_variant("6 s idle between messages", 2, 100, "--pause", 6)),
       ("client-best-effort", s_client_variant("BestEffort", 10, 5000, "--delivery", "best-effort")),
       ("client-unreliable", s_client_variant("Unreliable", 20, 100, "--delivery", "unreliable")),
       ("client-wrong-key", s_client_wrong_key),
       ("client-disconnected-by-reference", s_client_kicked),
       ("reference-client-echo", s_reference_client_echo),
       ("reference-client-disconnected", s_reference_client_closed),
       ("reference-client-lossy", s_reference_client_lossy),
       ("client-lossy-100000", s_lossy)]
)


class Env:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, type=Path, help="directory of the built examples")
    ap.add_argument("--venv", required=True, type=Path, help="virtual environment with mpgameserver 0.2.4")
    ap.add_argument("--work", required=True, type=Path, help="directory for keys and logs")
    ap.add_argument("only", nargs="*", help="run only scenarios whose name contains one of these")
    args = ap.parse_args()

    env = Env()
    env.bin = args.bin.resolve()
    env.python = (args.venv / "bin" / "python").absolute()
    env.mpcli = (args.venv / "bin" / "mpcli").absolute()
    env.work = args.work.resolve()
    env.keys = env.work / "keys"
    env.ref_key, env.ref_pub = env.keys / "ref" / "root.key", env.keys / "ref" / "root.pub"
    env.rs_key, env.rs_pub = env.keys / "rs" / "root.key", env.keys / "rs" / "root.pub"

    chosen = [(n, f) for n, f in SCENARIOS if n == "keys" or not args.only or any(o in n for o in args.only)]
    failed, t_all = 0, time.monotonic()
    for i, (name, fn) in enumerate(chosen):
        sc = Scenario(env, name)
        try:
            detail = fn(sc)
            ok = True
        except Failure as e:
            detail, ok = str(e), False
        except Exception as e:  # a harness bug must still give a result line
            detail, ok = "harness error: %s: %s" % (type(e).__name__, e), False
        finally:
            sc.close()
        crash = re.compile(r"Traceback \(most recent call last\)|panicked at")
        crashed = [p.label for p in sc.procs if crash.search(p.err())]
        if crashed and ok:
            # The reference must never raise because of what we sent (§16 bug 6); ours must never panic.
            detail, ok = "%s crashed (a Python traceback or a Rust panic); %s" % (", ".join(crashed), detail), False
        took = time.monotonic() - sc.start_time
        if took > SCENARIO_LIMIT:
            detail, ok = "took %.1f s, over the %d s limit; %s" % (took, SCENARIO_LIMIT, detail), False
        print("%s %s %s (%.1f s)" % ("PASS" if ok else "FAIL", name, detail, took), flush=True)
        if not ok:
            failed += 1
            for p in sc.procs:
                for line in p.tail():
                    print("  | " + line)
            print("  | logs: %s" % sc.logdir, flush=True)
            if name == "keys":
                for rest, _ in chosen[i + 1:]:
                    print("FAIL %s not run: no keys" % rest, flush=True)
                return 1
    print("interop: %d passed, %d failed, %.1f s" % (len(chosen) - failed, failed, time.monotonic() - t_all))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
