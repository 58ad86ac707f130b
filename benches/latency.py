#!/usr/bin/env python3
"""Detection latency: from a watched process's death to warden's console alert.

Starts the release `warden` with a process collector polling every 10 s (so only
the pidfd path can be fast) and a rule firing when the process is gone, then kills
a real `sleep` process ROUNDS times and times kill -> FIRING line on stdout.

    cargo build --release && python3 benches/latency.py [ROUNDS]
"""
import os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request, json

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "warden")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    d = tempfile.mkdtemp()
    pidfile = os.path.join(d, "victim.pid")
    os.makedirs(os.path.join(d, "rules"))
    with open(os.path.join(d, "rules", "p.rhai"), "w") as f:
        f.write('rule("VictimDown", #{ severity: "critical", '
                'when: || series("process_running", #{instance: "victim"}) == 0 });\n')
    with open(os.path.join(d, "w.toml"), "w") as f:
        f.write(f'[store]\npath = "w.db"\n[rules]\npaths = ["rules/"]\ninterval = "10s"\n'
                f'[[collector.process]]\nname = "victim"\npidfile = "{pidfile}"\ninterval = "10s"\n')
    port = free_port()
    victim = subprocess.Popen(["sleep", "3600"])
    open(pidfile, "w").write(str(victim.pid))
    w = subprocess.Popen([BIN, "run", "--config", "w.toml", "--listen", f"127.0.0.1:{port}"],
                         cwd=d, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def api(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return json.load(r)

    def wait(pred, limit=30):
        end = time.time() + limit
        while time.time() < end:
            try:
                if pred():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("timed out")

    def running():
        q = api("/api/v1/query?metric=process_running&range=1m&instance=victim")
        return q and q[0]["samples"][-1][1] == 1

    lat = []
    try:
        for _ in range(ROUNDS):
            wait(lambda: api("/api/v1/alerts") == [] and running())
            time.sleep(0.3)
            t0 = time.monotonic()
            victim.kill()
            victim.wait()
            while True:
                line = w.stdout.readline()
                if "FIRING" in line and "VictimDown" in line:
                    break
                if not line:
                    raise SystemExit("warden exited")
            lat.append((time.monotonic() - t0) * 1000)
            victim = subprocess.Popen(["sleep", "3600"])
            open(pidfile, "w").write(str(victim.pid))
            # The next 10 s collection picks the new process up; the alert resolves then.
    finally:
        victim.kill()
        w.send_signal(signal.SIGTERM)
        w.wait(10)
    lat.sort()
    print(f"process death -> console alert, {len(lat)} rounds: "
          f"median {statistics.median(lat):.1f} ms, p90 {lat[int(len(lat) * 0.9) - 1]:.1f} ms, "
          f"worst {lat[-1]:.1f} ms, best {lat[0]:.1f} ms")


if __name__ == "__main__":
    main()
