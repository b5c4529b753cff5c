#!/usr/bin/env python3
"""TLS termination: gw beside nginx on the same certificate, in one run.

Makes an ECDSA P-256 certificate under /tmp/gwbench/tls, starts the nginx upstream (port 9001),
nginx terminating TLS (peers/nginx-tls.conf, port 9111) and gw (gw-tls.yaml, port 9112), one
worker each, then in interleaved rounds measures per target:
  keepalive   wrk, 1 thread, 50 keep-alive HTTPS connections: requests/s, p99, CPU us/request
  full        N parallel `openssl s_time -new`: a full handshake + one HTTP/1.0 request per
              connection: connections/s, CPU us/connection of the server
  resumed     the same with -reuse: session resumption (tickets)
CPU is the server's own (user+sys of its processes, /proc), the contention-free figure.
"""
import argparse, os, re, signal, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gwbench import cpu_seconds, to_ms  # noqa: E402

TLS = "/tmp/gwbench/tls"
PATH = "/api/v1/users/42"


def make_cert():
    os.makedirs(TLS, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-keyout", f"{TLS}/key.pem", "-out", f"{TLS}/cert.pem"],
                   check=True, capture_output=True)


def s_time(port, mode, secs, clients):
    cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", mode, "-time", str(secs), "-www", PATH]
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(clients)]
    total = 0
    for p in ps:
        out = p.communicate()[0]
        m = re.findall(r"(\d+) connections in (\d+) real seconds", out)
        total += int(m[-1][0]) if m else 0
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--clients", type=int, default=4, help="parallel s_time clients")
    a = ap.parse_args()
    make_cert()
    gw = os.path.join(HERE, "..", "bin", "gw")
    subprocess.run([gw, "check", f"{HERE}/gw-tls.yaml"], check=True, capture_output=True)
    procs = {}
    for conf in ("upstream", "nginx-tls"):
        procs[conf] = subprocess.Popen(["nginx", "-c", f"{HERE}/peers/{conf}.conf", "-p", "/tmp/gwbench"])
    procs["gw-tls"] = subprocess.Popen([gw, "run", "-c", f"{HERE}/gw-tls.yaml"],
                                       stderr=open("/tmp/gwbench/gw-tls.log", "w"))
    try:
        time.sleep(1)
        targets = [("nginx-tls", 9111, procs["nginx-tls"].pid), ("gw-tls", 9112, procs["gw-tls"].pid)]
        for name, port, _ in targets:
            code = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                   f"https://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout
            print(f"check {name}: HTTP {code}", flush=True)
        res = {n: {k: [] for k in ("rps", "p99", "us", "full", "full_us", "resumed", "resumed_us")}
               for n, _, _ in targets}
        for _ in range(a.rounds):
            for name, port, pid in targets:
                r = res[name]
                c0 = cpu_seconds(pid)
                out = subprocess.run(["wrk", "-t1", f"-c{a.conns}", f"-d{a.secs}s", "--latency",
                                      f"https://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout
                c1 = cpu_seconds(pid)
                reqs = int(re.search(r"(\d+) requests in", out).group(1))
                r["rps"].append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
                r["p99"].append(to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)))
                r["us"].append((c1 - c0) * 1e6 / max(reqs, 1))
                if "Non-2xx" in out or "errors" in out:
                    print(f"warning {name}: {out.strip().splitlines()[-3]}", flush=True)
                for mode, key in (("-new", "full"), ("-reuse", "resumed")):
                    c0 = cpu_seconds(pid)
                    n = s_time(port, mode, a.secs, a.clients)
                    c1 = cpu_seconds(pid)
                    r[key].append(n / a.secs)
                    r[key + "_us"].append((c1 - c0) * 1e6 / max(n, 1))
        print(f"{'target':12} {'keepalive_rps':>13} {'p99_ms':>7} {'cpu_us/req':>10} "
              f"{'full_conn/s':>11} {'cpu_us/conn':>11} {'resumed_conn/s':>14} {'cpu_us/conn':>11}")
        med = statistics.median
        for name, _, _ in targets:
            r = res[name]
            print(f"{name:12} {med(r['rps']):13.0f} {med(r['p99']):7.2f} {med(r['us']):10.1f} "
                  f"{med(r['full']):11.0f} {med(r['full_us']):11.0f} {med(r['resumed']):14.0f} {med(r['resumed_us']):11.0f}")
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGQUIT)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
