#!/usr/bin/env python3
"""How long the cluster takes to declare a crashed silo dead, as the gateway sees it.

Starts redis-server and three gateway hosts (src/Gateway, built) on Redis membership, opens connections on silo 0
whose grains live on the other silos (echo with Placement=Remote), SIGKILLs silo 2 and measures the time until
silo 0 aborts the connections whose grains died with it (its membership view says Dead). Repeats --trials times.

  python3 bench/failure-detection.py [--trials 3] [-- extra host settings, e.g. --Orleans:Membership:ProbeTimeout=00:00:01]
"""
import os, re, signal, socket, subprocess, sys, time, threading, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_DIR = os.path.join(ROOT, "src", "Gateway", "bin", "Release", "net10.0")
if not os.path.exists(os.path.join(HOST_DIR, "OrleansProtocol.Gateway.dll")):
    HOST_DIR = os.path.join(ROOT, "src", "Gateway", "bin", "Debug", "net10.0")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    def __init__(self, args):
        self.lines = []
        self.proc = subprocess.Popen(["dotnet", os.path.join(HOST_DIR, "OrleansProtocol.Gateway.dll"), *args], cwd=HOST_DIR,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "DOTNET_ENVIRONMENT": "Production"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    def wait_for(self, pattern, timeout=60, since=0.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for stamp, line in list(self.lines):
                if stamp >= since and re.search(pattern, line):
                    return stamp, line
            time.sleep(0.01)
        raise TimeoutError(pattern)


def trial(extra):
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    cluster = f"detect-{uuid.uuid4().hex}"
    hosts = []
    try:
        for i in range(3):
            hosts.append(Host(["--Clustering:Provider=Redis", f"--Clustering:Redis:ConnectionString=127.0.0.1:{redis_port}",
                               f"--Orleans:ClusterId={cluster}", f"--Silo:SiloPort={free_port()}", f"--Silo:GatewayPort={free_port()}",
                               "--Silo:AdvertisedIP=127.0.0.1", f"--OrleansProtocol:PortOffset={23000 + i * 100}",
                               "--Health:Urls=http://127.0.0.1:0", "--OrleansProtocol:Listeners:echo:Placement=Remote", *extra]))
        for h in hosts:
            h.wait_for(r"Listener echo serving")
        time.sleep(3)  # let the three silos see each other, so Remote placement spreads over 1 and 2
        clients = []
        for n in range(20):
            c = socket.create_connection(("127.0.0.1", 7000 + 23000))
            c.sendall(b"x\n")
            c.recv(16)
            clients.append(c)
        killed = time.monotonic()
        hosts[2].proc.send_signal(signal.SIGKILL)
        stamp, _ = hosts[0].wait_for(r"the silo holding its grain .* died; aborting", timeout=120, since=killed)
        return stamp - killed
    finally:
        for h in hosts:
            if h.proc.poll() is None:
                h.proc.kill()
        redis.kill()


def main():
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    trials = int(args[args.index("--trials") + 1]) if "--trials" in args else 3
    times = [trial(extra) for _ in range(trials)]
    print(f"settings: {' '.join(extra) or 'Orleans defaults'}")
    print("seconds from SIGKILL to the gateway aborting the dead silo's connections: " + ", ".join(f"{t:.1f}" for t in times))


if __name__ == "__main__":
    main()
