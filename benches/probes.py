#!/usr/bin/env python3
"""200 http probes at a 1 s interval: warden's CPU and resident memory.

    cargo build --release && python3 benches/probes.py [SECONDS] [PROBES]

A local HTTP server (this script, in a thread pool) answers every probe; warden is
pinned to one core (taskset) and measured from /proc after a warm-up.
"""
import http.server, os, signal, socket, socketserver, subprocess, sys, tempfile, threading, time, urllib.request

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
PROBES = int(sys.argv[2]) if len(sys.argv) > 2 else 200
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "warden")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b'{"status":"UP"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 512


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    srv = Server(("127.0.0.1", 0), Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    target = srv.server_address[1]
    d = tempfile.mkdtemp()
    probes = "".join(
        f'\n[[collector.http]]\nname = "p{i}"\nurl = "http://127.0.0.1:{target}/health"\n'
        f'interval = "1s"\ntimeout = "900ms"\nbody_contains = "UP"\n'
        for i in range(PROBES)
    )
    with open(os.path.join(d, "warden.toml"), "w") as f:
        f.write('[store]\npath = "w.db"\n' + probes)
    port = free_port()
    w = subprocess.Popen(["taskset", "-c", "0", BIN, "run", "--config", "warden.toml",
                          "--listen", f"127.0.0.1:{port}"], cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(10)  # warm-up: first probes, store settling
        c0, t0 = cpu_ticks(w.pid), time.monotonic()
        peak = 0
        while time.monotonic() - t0 < SECONDS:
            time.sleep(1)
            peak = max(peak, rss(w.pid))
        c1, t1 = cpu_ticks(w.pid), time.monotonic()
        cpu = (c1 - c0) / TICK / (t1 - t0) * 100
        q = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/query?metric=probe_success&range=10s", timeout=5).read()
        ok = q.count(b",1.0]") + q.count(b",1]")
        print(f"{PROBES} http probes at 1 s on one core over {SECONDS} s: CPU {cpu:.1f} % of the core, "
              f"RSS {rss(w.pid) / 1e6:.1f} MB (peak {peak / 1e6:.1f} MB); "
              f"successful probe samples in the last 10 s: {ok}")
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait(15)
        srv.shutdown()


if __name__ == "__main__":
    main()
