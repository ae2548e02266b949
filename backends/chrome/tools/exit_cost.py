#!/usr/bin/env python3
"""What the kernel's exit of a SIGKILLed Chromium costs, with no pool involved.

For each round: start /usr/bin/chromium (headless, one about:blank page, private
TMPDIR and profile in a scratch directory under ROOT), wait for DevToolsActivePort
and 1.5 s more, SIGKILL its process group and time (a) until the browser process is
reaped and (b) until no member of the group is alive (zombies excluded). With
--perf, the kill runs under `perf record -a -g` and the CPU the group's processes
spent in the 200 ms after the kill is summed, and the part of it in `exit_mmap`
(unmapping memory on exit), per process. perf's sampling slows the exits down by
roughly 10-20 %, so compare --perf rounds with each other only.

Usage: exit_cost.py MODEL ROUNDS [ROOT] [--perf]
  MODEL: std (the launcher's default process model), lean (ProcessModel::Lean's
  extra flags) or single (--single-process --no-zygote). ROOT defaults to /dev/shm.

The flags are the launcher's BASE_ARGS that change which processes start (see
launcher.rs and config.rs), not all of them. Needs root or the sandbox off
(--no-sandbox is passed). Leaves nothing behind: the scratch directory is removed.
"""

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FLAGS = [
    "--headless=new", "--remote-debugging-port=0", "--no-first-run",
    "--no-default-browser-check", "--disable-component-update",
    "--disable-background-networking", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-breakpad", "--disable-crash-reporter",
    "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
    "--disable-features=Translate,OptimizationHints,MediaRouter,"
    "DialMediaRouteProvider,SpareRendererForSitePerProcess,WebUIOmniboxPopup,"
    "WebUIOmniboxAimPopup",
]
MODELS = {
    "std": [],
    "lean": ["--no-zygote", "--in-process-gpu",
             "--enable-features=NetworkServiceInProcess2"],
    "single": ["--single-process", "--no-zygote"],
}


def group(pgid):
    """Live (not zombie) members of process group `pgid`."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(p))
    return out


def exit_cpu(data, kill_at, pids):
    """CPU ms of `pids` in the 200 ms after `kill_at`: total, exit_mmap per process."""
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,pid,tid,time,ip,sym"],
        capture_output=True, text=True, check=True).stdout
    samples, cur = [], None
    for line in out.splitlines():
        if line and not line.startswith("\t"):
            m = re.match(r"\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):", line)
            cur = [int(m.group(2)), float(m.group(4)), []] if m else None
            if cur:
                samples.append(cur)
        elif line.strip() and cur:
            cur[2].append(line.split()[-1])
    window = [s for s in samples if kill_at <= s[1] <= kill_at + 0.2 and s[0] in pids]
    per_ms = 1000 / FREQ
    total = len(window) * per_ms
    mmap = collections.Counter(s[0] for s in window if "exit_mmap" in s[2])
    return total, sorted((v * per_ms for v in mmap.values()), reverse=True)


FREQ = 10000


def one_round(model, root, perf):
    scratch = tempfile.mkdtemp(prefix="exit-cost-", dir=root)
    try:
        env = dict(os.environ, TMPDIR=scratch)
        args = ["/usr/bin/chromium", *FLAGS, *MODELS[model],
                f"--user-data-dir={scratch}/profile", "about:blank"]
        browser = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, process_group=0)
        try:
            port = f"{scratch}/profile/DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not os.path.exists(port):
                if time.monotonic() > deadline:
                    raise RuntimeError("no DevToolsActivePort within 30 s")
                time.sleep(0.005)
            time.sleep(1.5)
            pids = group(browser.pid)
            rec = None
            if perf:
                data = os.path.join(scratch, "perf.data")
                rec = subprocess.Popen(
                    ["perf", "record", "-a", "-g", "-F", str(FREQ), "-k",
                     "CLOCK_MONOTONIC", "-o", data, "--", "sleep", "1.5"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.8)
            kill_at = time.clock_gettime(time.CLOCK_MONOTONIC)
            t0 = time.perf_counter()
        finally:
            # Not reaped yet, so the group id is still ours.
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
        reaped = (time.perf_counter() - t0) * 1e3
        while group(browser.pid):
            time.sleep(0.001)
        gone = (time.perf_counter() - t0) * 1e3
        line = (f"{model}: {len(pids)} processes; browser reaped {reaped:.1f} ms, "
                f"all gone {gone:.1f} ms after SIGKILL")
        if rec:
            rec.wait()
            total, mmap = exit_cpu(data, kill_at, set(pids))
            line += (f"; CPU after the kill {total:.1f} ms, in exit_mmap "
                     f"{sum(mmap):.1f} ms ({', '.join(f'{v:.1f}' for v in mmap)})")
        print(line, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    argv = [a for a in sys.argv[1:] if a != "--perf"]
    perf = len(argv) != len(sys.argv) - 1
    if len(argv) < 2 or argv[0] not in MODELS:
        sys.exit(__doc__)
    root = argv[2] if len(argv) > 2 else "/dev/shm"
    for _ in range(int(argv[1])):
        one_round(argv[0], root, perf)


if __name__ == "__main__":
    main()
