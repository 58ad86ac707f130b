#!/usr/bin/env python3
"""How long `warden rules check` and `warden rules test` take over every rule pack.

    cargo build --release && python3 benches/rule_packs.py [RUNS]

(WARDEN_BIN=path runs another build.)

Runs each command RUNS times (default 10) over all packs of examples/ at once,
the way CI does, and prints the median and the fastest wall time of each, with
the number of rule files, rules and tests. A single process per run: the times
include start-up, reading and compiling every rule file, and (for `test`) the
simulated evaluations.
"""
import glob, json, os, statistics, subprocess, sys, time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("WARDEN_BIN") or os.path.join(ROOT, "target", "release", "warden")


def packs():
    out = []
    for pack in sorted(glob.glob(os.path.join(ROOT, "examples", "*", ""))):
        if os.path.isdir(os.path.join(pack, "rules")) and os.path.isdir(os.path.join(pack, "tests")):
            out.append(pack.rstrip("/"))
    return out


def timed(args):
    times = []
    out = None
    for _ in range(RUNS):
        start = time.perf_counter()
        out = subprocess.run([BIN] + args, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if out.returncode != 0:
            sys.exit(f"{' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return statistics.median(times), min(times), out


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    ps = packs()
    rules = [os.path.join(p, "rules") for p in ps]
    tests = [os.path.join(p, "tests") for p in ps]
    med, best, out = timed(["rules", "check", "--format", "json"] + rules)
    doc = json.loads(out.stdout)
    print(f"packs: {len(ps)} ({', '.join(os.path.basename(p) for p in ps)})")
    print(f"rules check: {doc['files']} files, {doc['rules']} rules: "
          f"median {med * 1000:.1f} ms, fastest {best * 1000:.1f} ms")
    med, best, out = timed(["rules", "test", "--format", "json"] + tests)
    doc = json.loads(out.stdout)
    print(f"rules test: {len(doc['files'])} files, {doc['passed']} tests: "
          f"median {med * 1000:.1f} ms, fastest {best * 1000:.1f} ms")
    med, best, _ = timed(["--version"])
    print(f"(process start alone: median {med * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
