#!/usr/bin/env python3
"""Daemon overhead on its embedded default: CPU and resident memory over a window.

    cargo build --release && python3 benches/overhead.py [SECONDS]
"""
import os, signal, socket, subprocess, sys, tempfile, time, urllib.request

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "warden")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss(pid):
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE


def main():
    d = tempfile.mkdtemp()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    w = subprocess.Popen([BIN, "run", "--db", "w.db", "--listen", f"127.0.0.1:{port}"], cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(10)  # past start-up: first collections, rule compilation
        c0, t0 = cpu_ticks(w.pid), time.monotonic()
        peak = 0
        while time.monotonic() - t0 < SECONDS:
            time.sleep(1)
            peak = max(peak, rss(w.pid))
        c1, t1 = cpu_ticks(w.pid), time.monotonic()
        cpu = (c1 - c0) / TICK / (t1 - t0) * 100
        print(f"embedded default over {SECONDS} s: CPU {cpu:.2f} % of one core, "
              f"RSS {rss(w.pid) / 1e6:.1f} MB (peak {peak / 1e6:.1f} MB)")
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait(10)


if __name__ == "__main__":
    main()
