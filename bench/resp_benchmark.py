#!/usr/bin/env python3
"""redis-benchmark against the RESP sample and a real redis-server, in one invocation, alternating.

Starts the gateway host (Release) with the RESP listener on --port and a redis-server on --redis-port, warms both up,
then for each round and each pipeline depth runs `redis-benchmark -t TEST -n N -c C -P P` once per test against each
server (the order alternates between rounds). Reports, per test and depth, the median requests/s and p99 of each, their
ratio, and the server's CPU per request (user + system time of the server process over the run, from /proc).

    python3 bench/resp_benchmark.py                       # -n 200000 -c 50, -P 1 and 16, 3 rounds
    python3 bench/resp_benchmark.py --key-slots 0 -r 100000   # a grain per key, random keys
"""
import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ["ping_inline", "ping_mbulk", "set", "get", "incr"]
CSV_NAMES = {"ping_inline": "PING_INLINE", "ping_mbulk": "PING_MBULK", "set": "SET", "get": "GET", "incr": "INCR"}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(port, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.5)
    sys.exit(f"nothing answers PING on {port}")


def bench(port, pid, test, args, pipeline):
    cmd = ["redis-benchmark", "-p", str(port), "-t", test, "-n", str(args.requests), "-c", str(args.clients),
           "-P", str(pipeline), "--csv"]
    if args.random_keys:
        cmd += ["-r", str(args.random_keys)]
    before = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - before
    rows = {row["test"]: row for row in csv.DictReader(io.StringIO(out))}
    row = rows[CSV_NAMES[test]]
    return float(row["rps"]), float(row["p99_latency_ms"]), cpu / args.requests * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--requests", type=int, default=200_000)
    p.add_argument("-c", "--clients", type=int, default=50)
    p.add_argument("--pipelines", default="1,16")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int, default=6385, help="the gateway's RESP port for the run")
    p.add_argument("--redis-port", type=int, default=6386)
    p.add_argument("--key-slots", type=int, default=None, help="Resp:KeySlots for the host (0: a grain per key)")
    p.add_argument("-r", "--random-keys", type=int, default=0, help="redis-benchmark -r: random keys out of this many")
    args = p.parse_args()

    subprocess.run(["dotnet", "build", "-c", "Release", "-v", "q", os.path.join(ROOT, "src", "Gateway")], check=True,
                   stdout=subprocess.DEVNULL)
    host_args = [os.path.join(ROOT, "src", "Gateway", "bin", "Release", "net10.0", "OrleansProtocol.Gateway"),
                 f"--OrleansProtocol:Listeners:resp:Port={args.port}", "--OrleansProtocol:PortOffset=100",
                 "--Health:Urls=http://127.0.0.1:0", "--Logging:LogLevel:Default=Warning"]
    if args.key_slots is not None:
        host_args.append(f"--Resp:KeySlots={args.key_slots}")
    host = subprocess.Popen(host_args, cwd=os.path.join(ROOT, "src", "Gateway"), stdout=subprocess.DEVNULL)
    redis = subprocess.Popen(["redis-server", "--port", str(args.redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        wait_for(args.port)
        wait_for(args.redis_port)
        servers = {"gateway": (args.port, host.pid), "redis": (args.redis_port, redis.pid)}
        for name, (port, pid) in servers.items():  # warm-up: JIT, activations, connection pools
            for test in TESTS:
                bench(port, pid, test, argparse.Namespace(**{**vars(args), "requests": 20_000}), 1)

        results = {}
        pipelines = [int(x) for x in args.pipelines.split(",")]
        for round_ in range(args.rounds):
            order = ["gateway", "redis"] if round_ % 2 == 0 else ["redis", "gateway"]
            for pipeline in pipelines:
                for test in TESTS:
                    for name in order:
                        port, pid = servers[name]
                        results.setdefault((pipeline, test, name), []).append(bench(port, pid, test, args, pipeline))
            print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)

        print(f"redis-benchmark -n {args.requests} -c {args.clients}" + (f" -r {args.random_keys}" if args.random_keys else "")
              + f", {args.rounds} rounds, medians" + (f"; Resp:KeySlots={args.key_slots}" if args.key_slots is not None else ""))
        print()
        print("| -P | test | gateway req/s | redis req/s | ratio | gateway p99 ms | redis p99 ms | gateway CPU µs/req | redis CPU µs/req | CPU ratio |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for pipeline in pipelines:
            for test in TESTS:
                g = [statistics.median(x) for x in zip(*results[(pipeline, test, "gateway")])]
                r = [statistics.median(x) for x in zip(*results[(pipeline, test, "redis")])]
                print(f"| {pipeline} | {CSV_NAMES[test]} | {g[0]:,.0f} | {r[0]:,.0f} | {g[0] / r[0]:.2f}× | {g[1]:.2f} | {r[1]:.2f} "
                      f"| {g[2]:.1f} | {r[2]:.1f} | {g[2] / r[2]:.1f}× |")
    finally:
        host.terminate()
        redis.terminate()
        host.wait(60)
        redis.wait(60)


if __name__ == "__main__":
    main()
