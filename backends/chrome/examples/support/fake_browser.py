"""A stand-in for Chromium, for `examples/memory_cost.rs --simulated` only: the shape of
an idle headless browser's process tree at a fraction of its memory, so that the memory
sampler's cost can be measured with more browsers than the host can hold.

Started by ChromeLauncher with Chromium's arguments (through a `#!/bin/sh` wrapper that
`exec`s it, so the started process is this one):
- 5 helpers in the browser's process group (`sleep infinity`; Chromium 156 idles with 6
  processes in the group: browser, zygotes, GPU, network and storage utilities);
- 2 crash-handler stand-ins that leave the group (`setsid`), carrying
  `--database=<session dir>/home/...` as Chromium's crashpad handlers do, so only the
  session's matcher can attribute them;
- a DevTools endpoint: `DevToolsActivePort`, and a WebSocket on loopback that answers
  every CDP command with an empty result (`Browser.close` also kills the group).
"""

import base64
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import uuid

GROUP_HELPERS = 5
STRAYS = 2


def session_dir():
    for a in sys.argv[1:]:
        if a.startswith("--user-data-dir="):
            return os.path.dirname(a.split("=", 1)[1])
    sys.exit("no --user-data-dir")


def spawn(argv0, setsid):
    pid = os.fork()
    if pid == 0:
        if setsid:
            os.setsid()
        os.execv("/bin/sleep", [argv0, "infinity"])


def send(conn, op, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | op, n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | op, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | op, 127, n)
    conn.sendall(head + payload)


def serve(conn):
    f = conn.makefile("rb")
    key = None
    while True:
        line = f.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    if key is None:
        conn.close()
        return
    accept = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    )
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    while True:
        head = f.read(2)
        if len(head) < 2:
            return
        op, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", f.read(8))[0]
        mask = f.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(n)))
        if op == 8:
            return
        if op == 9:
            send(conn, 10, data)
        elif op == 1:
            msg = json.loads(data)
            reply = {"id": msg.get("id"), "result": {}}
            if "sessionId" in msg:
                reply["sessionId"] = msg["sessionId"]
            send(conn, 1, json.dumps(reply).encode())
            if msg.get("method") == "Browser.close":
                os.killpg(0, signal.SIGKILL)


def main():
    d = session_dir()
    for _ in range(GROUP_HELPERS):
        spawn("sleep", False)
    for i in range(STRAYS):
        spawn(f"--database={d}/home/.config/chromium/Crash Reports/{i}", True)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port_file = os.path.join(d, "profile", "DevToolsActivePort")
    with open(port_file + ".tmp", "w") as out:
        out.write(f"{srv.getsockname()[1]}\n/devtools/browser/{uuid.uuid4()}")
    os.rename(port_file + ".tmp", port_file)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
