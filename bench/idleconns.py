#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET PATH on each and reads the answer,
then keeps them all open and silent until stdin closes. Prints "open N" once they are all idle.
Usage: idleconns.py HOST PORT PATH N"""
import re, resource, socket, sys

def main():
    host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\napikey: key-500\r\n\r\n").encode()
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(req)
            buf = b""
            while True:
                d = s.recv(65536)
                if not d: raise OSError("closed before the answer")
                buf += d
                end = buf.find(b"\r\n\r\n")
                if end < 0: continue
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", buf[:end])
                if m and len(buf) >= end + 4 + int(m.group(1)): break
                if not m: break
            if not buf.startswith(b"HTTP/1.1 200"): raise OSError(buf[:40].decode(errors="replace"))
            socks.append(s)
    except OSError as e:
        print(f"error after {len(socks)} connections: {e}", flush=True)
        return 1
    print(f"open {len(socks)}", flush=True)
    sys.stdin.read()
    for s in socks: s.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
