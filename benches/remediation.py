#!/usr/bin/env python3
"""Time to recovery of a killed service: warden against Monit, on the same service.

Kills `warden-demo-service` with SIGKILL ROUNDS times under each supervisor and
times kill -> the service answering /health again (polled every 2 ms):

- warden, pidfd: a process collector on the pidfile (the kernel reports the exit
  at once), a rule on `process_running == 0`, a restart action with an HTTP
  health check;
- warden, HTTP probe: only an HTTP probe every 1 s sees the failure
  (`probe_success == 0`), same action;
- Monit 5.x: `set daemon 1`, `check process … with pidfile … start program`.

Also reported: the service's own start time (`--detach` returns once it answers),
and for warden the action start latency from the audit log (alert firing ->
process spawned, `started_at` minus the firing time in the alert history).

    cargo build --release --bin warden --bin warden-demo-service
    python3 benches/remediation.py [ROUNDS]      # needs Debian's `monit`
"""
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
ROOT = os.environ.get("WARDEN_TARGET") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release")
WARDEN = os.path.join(ROOT, "warden")
DEMO = os.path.join(ROOT, "warden-demo-service")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.settimeout(0.5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return b" 200 " in s.recv(64)
    except OSError:
        return False


def wait(pred, limit=30, step=0.002):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except OSError:
            pass
        time.sleep(step)
    return False


def pid_of(pidfile):
    try:
        return int(open(pidfile).read().strip())
    except (OSError, ValueError):
        return None


def kill_and_time(pidfile, port):
    """SIGKILL the service; seconds until it answers again (None: never)."""
    pid = pid_of(pidfile)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # Wait for the old process to be gone so its socket does not answer.
    if not wait(lambda: not answers(port) or pid_of(pidfile) != pid, 5, 0.0005):
        return None
    if not wait(lambda: answers(port) and pid_of(pidfile) != pid, 30, 0.002):
        return None
    return time.monotonic() - t0


def stats(name, xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        print(f"{name:<34} no successful round")
        return
    xs.sort()
    p90 = xs[int(0.9 * (len(xs) - 1))]
    print(f"{name:<34} n={len(xs):>2}  median {statistics.median(xs)*1000:7.1f} ms  "
          f"p90 {p90*1000:7.1f} ms  max {max(xs)*1000:7.1f} ms")


def start_demo(port, pidfile):
    subprocess.run([DEMO, "--port", str(port), "--pidfile", pidfile, "--detach"], check=True)


def warden_round_trip(mode):
    d = tempfile.mkdtemp()
    port, api = free_port(), free_port()
    pidfile = os.path.join(d, "demo.pid")
    os.makedirs(os.path.join(d, "rules"))
    if mode == "pidfd":
        collector = (f'[[collector.process]]\nname = "demo"\npidfile = "{pidfile}"\ninterval = "1s"\n')
        rule = 'series("process_running", #{ instance: "demo" }) == 0'
    else:
        collector = (f'[[collector.http]]\nname = "demo"\nurl = "http://127.0.0.1:{port}/health"\n'
                     f'interval = "1s"\ntimeout = "500ms"\n')
        rule = 'series("probe_success", #{ instance: "demo" }) == 0'
    with open(os.path.join(d, "rules", "demo.rhai"), "w") as f:
        f.write(f'rule("DemoDown", #{{ severity: "critical", remediate: ["restart-demo"], when: || {rule} }});\n')
    with open(os.path.join(d, "w.toml"), "w") as f:
        f.write(f'[store]\npath = "w.db"\n[rules]\npaths = ["rules/"]\ninterval = "1s"\n{collector}\n'
                f'[[action.restart]]\nname = "restart-demo"\n'
                f'start = ["{DEMO}", "--port", "{port}", "--pidfile", "{pidfile}", "--detach"]\n'
                f'health = {{ http = "http://127.0.0.1:{port}/health", interval = "20ms", timeout = "10s" }}\n'
                f'cooldown = "0s"\nmax_attempts = 1000\nwindow = "1m"\nverify_within = "30s"\n')
    start_demo(port, pidfile)
    w = subprocess.Popen([WARDEN, "run", "--config", "w.toml", "--listen", f"127.0.0.1:{api}"],
                         cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{api}{path}", timeout=2) as r:
            return json.load(r)

    def quiet():
        return not any(a["name"] == "DemoDown" for a in get("/api/v1/alerts"))

    times, starts = [], []
    try:
        wait(lambda: get("/api/v1/query?metric=up&range=1m") is not None, 20, 0.05)
        time.sleep(2.5)
        for _ in range(ROUNDS):
            if not wait(quiet, 20, 0.05):
                break
            time.sleep(0.3)
            times.append(kill_and_time(pidfile, port))
        wait(quiet, 20, 0.05)
        fired = [h["at"] for h in get("/api/v1/alerts/history?limit=10000")
                 if h["name"] == "DemoDown" and h["to"] == "firing"]
        runs = [a["started_at"] for a in get("/api/v1/actions?limit=10000") if a["started_at"]]
        for f in fired:
            after = [s - f for s in runs if s >= f]
            if after:
                starts.append(min(after) / 1000.0)
    finally:
        w.terminate()
        w.wait(10)
        pid = pid_of(pidfile)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
    return times, starts


def monit_round_trip():
    d = tempfile.mkdtemp()
    port = free_port()
    pidfile = os.path.join(d, "demo.pid")
    rc = os.path.join(d, "monitrc")
    with open(rc, "w") as f:
        f.write(f'set daemon 1\nset logfile {d}/monit.log\nset idfile {d}/monit.id\n'
                f'set statefile {d}/monit.state\nset pidfile {d}/monit.pid\n'
                f'check process demo with pidfile {pidfile}\n'
                f'  start program = "{DEMO} --port {port} --pidfile {pidfile} --detach" with timeout 10 seconds\n')
    os.chmod(rc, 0o600)
    start_demo(port, pidfile)
    m = subprocess.Popen(["monit", "-c", rc, "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    try:
        time.sleep(2.5)
        for _ in range(ROUNDS):
            wait(lambda: answers(port), 20, 0.01)
            time.sleep(0.3)
            times.append(kill_and_time(pidfile, port))
    finally:
        m.terminate()
        m.wait(10)
        pid = pid_of(pidfile)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
    return times


def own_start():
    d = tempfile.mkdtemp()
    out = []
    for _ in range(ROUNDS):
        port = free_port()
        pidfile = os.path.join(d, "s.pid")
        t0 = time.monotonic()
        start_demo(port, pidfile)
        out.append(time.monotonic() - t0)
        os.kill(pid_of(pidfile), signal.SIGKILL)
    shutil.rmtree(d, ignore_errors=True)
    return out


def main():
    for b in (WARDEN, DEMO):
        if not os.path.exists(b):
            raise SystemExit(f"{b} missing: cargo build --release --bin warden --bin warden-demo-service")
    print(f"{ROUNDS} kills each; recovery = SIGKILL -> /health answers 200 again\n")
    stats("service start (--detach) alone", own_start())
    t, s = warden_round_trip("pidfd")
    stats("warden, pidfd detection", t)
    stats("  action start (firing -> spawn)", s)
    t, s = warden_round_trip("http")
    stats("warden, HTTP probe every 1 s", t)
    stats("  action start (firing -> spawn)", s)
    if shutil.which("monit"):
        stats("Monit 5, set daemon 1", monit_round_trip())
    else:
        print("monit not installed (apt-get install monit): Monit not measured")


if __name__ == "__main__":
    main()
