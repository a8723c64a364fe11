#!/usr/bin/env python3
"""Side-by-side benchmark: rscp against OpenSSH scp -O, scp (SFTP), rsync and pscp.

    python3 bench/run.py [--runs N] [--quick] [--cases a,b,...] [--rscp PATH] [--rscpd PATH]

Everything runs on 127.0.0.1 against a throwaway OpenSSH sshd, with all data on
tmpfs (/dev/shm/rscp-bench-*, removed at the end). See bench/README.md.
Not a test: CI never runs it.
"""

import argparse
import datetime
import hashlib
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1024 * 1024
GiB = 1024 * MiB
CIPHER = "aes128-gcm@openssh.com"
RSS_LIMIT_MIB = 64

# case group -> (title, target ratio against scp -O for rscp)
GROUPS = {
    "a": ("big file upload", 1.3),
    "b": ("big file download", 1.3),
    "c": ("tree up and down (-r)", 3.0),
    "d": ("256 MiB over +20 ms each way", 5.0),
    "e": ("connect + copy one 1 KiB file", 1.0),
    "f": ("rscp->rscpd vs scp -O->sshd", 2.0),
}


def log(*a):
    print(*a, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ssh_banner(port, timeout=10.0, proc=None):
    """Waits until something on PORT answers with an SSH banner."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        out = (p.stdout + p.stderr).strip().splitlines()
        return out[0] if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


# --------------------------------------------------------------------------
# Environment: sshd, keys, configs, data


class Env:
    def __init__(self, args):
        self.args = args
        self.procs = []  # background processes to stop, in order
        self.work = tempfile.mkdtemp(prefix="rscp-bench-", dir="/dev/shm")
        self.src = os.path.join(self.work, "src")  # data sets (source of uploads and downloads)
        self.dst = os.path.join(self.work, "dst")  # destination of every copy
        self.cfg = os.path.join(self.work, "ssh_config")
        self.ppk = os.path.join(self.work, "id.ppk")
        self.ports = {}  # endpoint name -> port
        self.hostkey_fp = None

    # -- processes
    def spawn(self, argv, name, **kw):
        logf = open(os.path.join(self.work, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=kw.pop("stdout", logf), stderr=logf, start_new_session=True, **kw)
        self.procs.append((name, p))
        return p

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait(timeout=5)
                    except (ProcessLookupError, subprocess.TimeoutExpired):
                        pass
        self.procs.clear()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log(f"kept {self.work}")

    # -- sshd and keys
    def start_sshd(self):
        w = self.work
        for name in ("hostkey", "id"):
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rscp-bench", "-f", os.path.join(w, name)])
        shutil.copy(os.path.join(w, "id.pub"), os.path.join(w, "authorized_keys"))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        port = free_port()
        conf = os.path.join(w, "sshd_config")
        with open(conf, "w") as f:
            f.write(
                f"""Port {port}
ListenAddress 127.0.0.1
HostKey {w}/hostkey
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {w}/authorized_keys
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
LogLevel ERROR
"""
            )
        p = self.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", conf], "sshd")
        if not wait_ssh_banner(port, proc=p):
            raise SystemExit("sshd did not start; see " + os.path.join(w, "sshd.log"))
        self.ports["sshd"] = port
        self.hostkey_pub = open(os.path.join(w, "hostkey.pub")).read().split()[:2]
        self.hostkey_fp = sh(["ssh-keygen", "-l", "-E", "sha256", "-f", os.path.join(w, "hostkey.pub")]).split()[1]
        # PuTTY wants its own key format.
        if shutil.which("puttygen"):
            try:
                sh(["puttygen", os.path.join(w, "id"), "-O", "private", "-o", self.ppk])
            except subprocess.CalledProcessError as e:
                log("puttygen failed:", e.stderr.strip())

    def start_proxy(self, program):
        """Starts the delay proxy: the Rust one (bench/delay-proxy) if built, else
        the Python one, whose own CPU caps the chain near 170 MB/s here."""
        port = free_port()
        argv = [program] if program else [sys.executable, os.path.join(ROOT, "bench", "delay_proxy.py")]
        p = self.spawn(
            argv + ["--listen", f"127.0.0.1:{port}", "--target", f"127.0.0.1:{self.ports['sshd']}",
                    "--delay-ms", str(self.args.delay_ms)],
            "delay_proxy",
        )
        self.proxy_name = os.path.basename(argv[-1])
        if not wait_ssh_banner(port, proc=p):
            raise SystemExit("delay proxy did not start")
        self.ports["delay"] = port

    def start_rscpd(self, rscpd):
        """Starts rscpd on a free port; returns True if it answers with an SSH banner."""
        port = free_port()
        p = self.spawn(rscpd_argv(rscpd, self, port), "rscpd")
        if not wait_ssh_banner(port, proc=p):
            return False
        self.ports["rscpd"] = port
        return True

    def write_client_config(self):
        """known_hosts (one line per endpoint port) and an ssh_config with one Host per endpoint."""
        kh = os.path.join(self.work, "known_hosts")
        typ, key = self.hostkey_pub
        with open(kh, "w") as f:
            for port in self.ports.values():
                f.write(f"[127.0.0.1]:{port} {typ} {key}\n")
        with open(self.cfg, "w") as f:
            for name, port in self.ports.items():
                f.write(
                    f"""Host bench-{name}
    HostName 127.0.0.1
    Port {port}
    User root
    IdentityFile {self.work}/id
    IdentitiesOnly yes
    UserKnownHostsFile {kh}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    Ciphers {CIPHER}
    Compression no

"""
                )

    # -- data
    def make_data(self):
        q = self.args.quick
        self.big_size = 256 * MiB if q else 1 * GiB
        self.nfiles = 1000 if q else 10000
        os.makedirs(self.src)
        os.makedirs(self.dst)
        self.files = {"big": os.path.join(self.src, "big.bin")}
        t = time.monotonic()
        write_random(self.files["big"], self.big_size)
        if self.big_size == 256 * MiB:
            self.files["mid"] = self.files["big"]
        else:
            self.files["mid"] = os.path.join(self.src, "mid.bin")
            write_random(self.files["mid"], 256 * MiB)
        self.files["small"] = os.path.join(self.src, "small.bin")
        write_random(self.files["small"], 1024)
        tree = os.path.join(self.src, "tree")
        ndirs = 50
        for i in range(self.nfiles):
            d = os.path.join(tree, f"d{i % ndirs:02d}")
            if i < ndirs:
                os.makedirs(d)
            with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
                f.write(os.urandom(4096))
        self.files["tree"] = tree
        self.sizes = {k: os.path.getsize(v) for k, v in self.files.items() if k != "tree"}
        self.sizes["tree"] = self.nfiles * 4096
        self.sums = {k: sha256(self.files[k]) for k in ("big", "mid", "small")}
        log(f"data: {self.big_size // MiB} MiB file, 256 MiB file, {self.nfiles} x 4 KiB in {ndirs} dirs"
            f" ({time.monotonic() - t:.1f} s)")


def write_random(path, size):
    block = os.urandom(4 * MiB)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
            block = hashlib.sha512(block[:64]).digest() + block[64:]  # cheap variation per block


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def rscpd_argv(rscpd, env, port):
    """The command line the benchmark starts rscpd with (DESIGN.md's contract): the
    same host key and authorized_keys as the throwaway sshd, and `/` as its root so
    the remote paths are the same as sshd's."""
    w = env.work
    return [rscpd, "--listen", f"127.0.0.1:{port}", "--root", "/",
            "--host-key", f"{w}/hostkey", "--authorized-keys", f"{w}/authorized_keys"]


# --------------------------------------------------------------------------
# Tools: each builds the client command line for one copy.


class Tool:
    def __init__(self, key, label, argv_fn, note="", directions=("up", "down")):
        self.key, self.label, self.argv_fn, self.note = key, label, argv_fn, note
        # The copy directions the tool serves.
        self.directions = directions

    def argv(self, env, endpoint, recursive, src, dst):
        return self.argv_fn(env, endpoint, recursive, src, dst)


def remote(endpoint, path):
    return f"bench-{endpoint}:{path}"


def make_tools(env, rscp):
    r = lambda rec: ["-r"] if rec else []
    tools = [
        Tool("rscp", "rscp", lambda e, ep, rec, s, d: [rscp, "-q", "-F", e.cfg, *r(rec), s, d]),
        Tool("rscp-s", "rscp -s (SFTP)", lambda e, ep, rec, s, d: [rscp, "-s", "-q", "-F", e.cfg, *r(rec), s, d]),
        Tool("scp-O", "scp -O", lambda e, ep, rec, s, d: ["scp", "-O", "-q", "-F", e.cfg, *r(rec), s, d]),
        Tool("scp-sftp", "scp (SFTP)", lambda e, ep, rec, s, d: ["scp", "-q", "-F", e.cfg, *r(rec), s, d]),
    ]
    skipped = []
    if shutil.which("rsync"):
        tools.append(Tool("rsync", "rsync --whole-file",
                          lambda e, ep, rec, s, d: ["rsync", "-q", "--whole-file", *r(rec),
                                                    "-e", f"ssh -F {e.cfg}", s, d]))
    else:
        skipped.append("rsync: not installed (apt-get install -y rsync)")
    if shutil.which("pscp") and os.path.exists(env.ppk):
        def pscp(e, ep, rec, s, d):
            # pscp has no -F: host, port, user, key and host key are given directly.
            fix = lambda x: x.replace(f"bench-{ep}:", "127.0.0.1:")
            return ["pscp", "-scp", "-q", "-batch", "-noagent", "-P", str(e.ports[ep]), "-l", "root",
                    "-i", e.ppk, "-hostkey", e.hostkey_fp, *r(rec), fix(s), fix(d)]
        tools.append(Tool("pscp", "pscp -scp", pscp, note="cipher: PuTTY's own preference (no -c)"))
    else:
        skipped.append("pscp: pscp or puttygen missing, or the key conversion failed")
    return tools, skipped


# --------------------------------------------------------------------------
# Cases


class Case:
    def __init__(self, cid, group, title, direction, payload, endpoint="sshd", target=None):
        self.cid, self.group, self.title = cid, group, title
        self.direction, self.payload, self.endpoint = direction, payload, endpoint
        self.own_target = target

    @property
    def target(self):
        # A case may ask less than its group: the 5x for (d) is for the download.
        return self.own_target if self.own_target is not None else GROUPS[self.group][1]


def make_cases(env):
    big = f"{env.big_size // MiB} MiB" if env.big_size < GiB else "1 GiB"
    return [
        Case("a", "a", f"{big} upload", "up", "big"),
        Case("b", "b", f"{big} download", "down", "big"),
        Case("c-up", "c", f"{env.nfiles} x 4 KiB tree upload (-r)", "up", "tree"),
        Case("c-down", "c", f"{env.nfiles} x 4 KiB tree download (-r)", "down", "tree"),
        Case("d-down", "d", "256 MiB download, +20 ms each way", "down", "mid", "delay"),
        Case("d-up", "d", "256 MiB upload, +20 ms each way", "up", "mid", "delay", target=1.0),
        Case("e", "e", "connect + 1 KiB upload", "up", "small"),
        Case("f-a", "f", f"{big} upload, rscp->rscpd vs scp -O->sshd", "up", "big", "rscpd"),
        Case("f-b", "f", f"{big} download, rscp->rscpd vs scp -O->sshd", "down", "big", "rscpd"),
        Case("f-c-up", "f", f"{env.nfiles} x 4 KiB tree upload, rscp->rscpd vs scp -O->sshd", "up", "tree", "rscpd"),
        Case("f-c-down", "f", f"{env.nfiles} x 4 KiB tree download, rscp->rscpd vs scp -O->sshd", "down", "tree",
             "rscpd"),
    ]


class Result:
    def __init__(self):
        self.wall, self.cpu, self.rss, self.errors = [], [], [], []


def run_once(argv, timeout, env):
    """Runs one client under /usr/bin/time; returns (rc, wall s, user+sys s of the
    client process tree, peak RSS KiB, stderr). /usr/bin/time counts every
    descendant the client waited for (scp's ssh, rsync's ssh): CPU is their sum,
    %M the largest RSS among them. (os.wait4 from Python would count the Python
    interpreter's pages that the child holds between fork and exec.)"""
    errf = tempfile.TemporaryFile()
    timef = os.path.join(env.work, "time.out")
    environ = dict(os.environ)
    environ.pop("SSH_AUTH_SOCK", None)
    environ["LC_ALL"] = "C"
    full = ["/usr/bin/time", "-o", timef, "-f", "%U %S %M", *argv]
    t0 = time.monotonic()
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                         start_new_session=True, env=environ)
    # A blocking wait, with a timer for the limit: Popen.wait(timeout=) polls
    # with sleeps of up to 50 ms, which rounded every time up to a 50 ms step.
    expired = threading.Event()

    def kill():
        expired.set()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        rc = p.wait()
    finally:
        timer.cancel()
    wall = time.monotonic() - t0
    timed_out = expired.is_set()
    errf.seek(0)
    err = errf.read().decode(errors="replace").strip()
    cpu, rss = 0.0, 0
    try:
        fields = open(timef).read().split()[-3:]
        cpu, rss = float(fields[0]) + float(fields[1]), int(fields[2])
    except (OSError, ValueError, IndexError):
        pass
    if timed_out:
        rc = rc or -9
        err = f"timed out after {timeout} s. " + err
    return rc, wall, cpu, rss, err


def verify(env, case, out):
    """Checks the copy at OUT (outside the timed part). Returns an error text or None."""
    if case.payload == "tree":
        n = size = 0
        for dirpath, _, names in os.walk(out):
            for name in names:
                n += 1
                size += os.path.getsize(os.path.join(dirpath, name))
        if (n, size) != (env.nfiles, env.sizes["tree"]):
            return f"tree has {n} files / {size} bytes, expected {env.nfiles} / {env.sizes['tree']}"
        return None
    if not os.path.isfile(out):
        return "destination file missing"
    size = os.path.getsize(out)
    if size != env.sizes[case.payload]:
        return f"size {size}, expected {env.sizes[case.payload]}"
    if case.payload in ("big", "mid") and sha256(out) != env.sums[case.payload]:
        return "checksum mismatch"
    return None


def run_case(env, case, tools, runs, timeout):
    src = env.files[case.payload]
    name = os.path.basename(src)
    results = {t.key: Result() for t in tools}
    timed_out = set()  # tools that hit the limit once: not run again in this case
    for rnd in range(runs):
        for tool in tools:  # interleaved: A B C A B C ...
            if tool.key in timed_out or case.direction not in tool.directions:
                continue
            shutil.rmtree(env.dst, ignore_errors=True)
            os.makedirs(env.dst)
            ep = tool.endpoint if getattr(tool, "endpoint", None) else case.endpoint
            if case.direction == "up":
                s, d = src, remote(ep, env.dst + "/")
            else:
                s, d = remote(ep, src), env.dst + "/"
            argv = tool.argv(env, ep, case.payload == "tree", s, d)
            rc, wall, cpu, rss, err = run_once(argv, timeout, env)
            res = results[tool.key]
            problem = f"exit {rc}: {err[-300:]}" if rc != 0 else verify(env, case, os.path.join(env.dst, name))
            if problem:
                res.errors.append(problem)
                if err.startswith("timed out"):
                    timed_out.add(tool.key)
                    log(f"  [{case.cid}] {tool.label}: no more runs in this case after a timeout")
                log(f"  [{case.cid}] round {rnd + 1} {tool.label:<20} FAILED {problem}")
                if rnd == 0 and rc != 0:
                    log("    command:", shlex.join(argv))
            else:
                res.wall.append(wall)
                res.cpu.append(cpu)
                res.rss.append(rss)
                log(f"  [{case.cid}] round {rnd + 1} {tool.label:<20} {wall:7.3f} s  cpu {cpu:6.3f} s"
                    f"  rss {rss / 1024:6.1f} MiB")
    shutil.rmtree(env.dst, ignore_errors=True)
    os.makedirs(env.dst)
    return results


# --------------------------------------------------------------------------
# Report


def summarize(env, case, tools, results):
    rows = []
    base = results.get("scp-O")
    base_med = statistics.median(base.wall) if base and base.wall else None
    for t in tools:
        if case.direction not in t.directions:
            continue
        r = results[t.key]
        row = {"case": case, "tool": t, "runs": len(r.wall), "errors": r.errors}
        if r.wall:
            med = statistics.median(r.wall)
            row.update(
                median=med, lo=min(r.wall), hi=max(r.wall),
                mbps=env.sizes[case.payload] / med / 1e6,
                ratio=(base_med / med) if base_med else None,
                cpu=statistics.median(r.cpu), rss=max(r.rss) / 1024,
            )
        if t.key.startswith("rscp") and case.target is not None:
            ok = row.get("ratio") is not None and row["ratio"] >= case.target and row.get("rss", 1e9) <= RSS_LIMIT_MIB
            row["target"] = f">= {case.target:g}x, RSS <= {RSS_LIMIT_MIB} MiB"
            row["pass"] = "pass" if ok else "FAIL"
        rows.append(row)
    return rows


def fmt_row(row):
    f = lambda k, spec: format(row[k], spec) if row.get(k) is not None else "-"
    if "median" not in row:
        status = "failed: " + (row["errors"][0][:60] if row["errors"] else "no runs")
        return [row["case"].cid, row["tool"].label, status, "", "", "", "", "", row.get("target", ""), row.get("pass", "")]
    spread = f"{row['lo']:.3f}–{row['hi']:.3f}"
    if row["errors"]:
        spread += f" ({len(row['errors'])} failed)"
    return [row["case"].cid, row["tool"].label, f("median", ".3f"), spread, f("mbps", ".1f"),
            f("ratio", ".2f"), f("cpu", ".3f"), f("rss", ".1f"), row.get("target", ""), row.get("pass", "")]


HEADER = ["case", "tool", "median s", "min–max s", "MB/s", "× scp -O", "CPU s", "peak RSS MiB", "target (rscp)", "pass"]


def print_table(rows):
    table = [HEADER] + [fmt_row(r) for r in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(HEADER))]
    for i, r in enumerate(table):
        log("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            log("  ".join("-" * w for w in widths))


def machine_info():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "CPU": model, "memory": mem,
            "kernel": platform.release(), "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}


def tool_versions(rscp):
    return {
        "rscp": version([rscp, "--version"]),
        "OpenSSH (scp, ssh, sshd)": version(["ssh", "-V"]),
        "rsync": version(["rsync", "--version"]) if shutil.which("rsync") else "not installed",
        "pscp": version(["pscp", "-V"]) if shutil.which("pscp") else "not installed",
        "python": platform.python_version(),
    }


def write_chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = []
    for r in rows:
        if r["case"].cid not in cases:
            cases.append(r["case"].cid)
    tools = []
    for r in rows:
        if r["tool"].label not in tools:
            tools.append(r["tool"].label)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(cases) + 2), 4.5))
    width = 0.8 / max(1, len(tools))
    for i, tool in enumerate(tools):
        xs, ys = [], []
        for j, c in enumerate(cases):
            for r in rows:
                if r["case"].cid == c and r["tool"].label == tool and r.get("ratio") is not None:
                    xs.append(j + (i - (len(tools) - 1) / 2) * width)
                    ys.append(r["ratio"])
        ax.bar(xs, ys, width, label=tool)
    for j, c in enumerate(cases):
        target = next(r["case"].target for r in rows if r["case"].cid == c)
        if target:
            ax.hlines(target, j - 0.45, j + 0.45, colors="red", linestyles="dashed")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("speed vs OpenSSH scp -O (>1 = faster)")
    ax.set_title("rscp benchmark: ratio to scp -O (red dashes: rscp targets)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(path, args, env, rows, notes, rscp, ran_groups, chart_ok):
    m = machine_info()
    v = tool_versions(rscp)
    quick = args.quick or args.runs < 5
    lines = ["# Benchmarks", ""]
    lines.append("Generated by `python3 bench/run.py` (see [bench/README.md](../bench/README.md)); "
                 "regenerate rather than edit by hand.")
    lines.append("")
    if quick:
        lines.append(f"> **Quick run — indicative only.** {args.runs} runs per tool"
                     f"{', `--quick` data sets (256 MiB file, 1,000 files)' if args.quick else ''}.")
        lines.append(">")
    if args.note:
        lines.append(f"> {args.note}")
        lines.append(">")
    lines.append(f"> Command: `python3 bench/run.py {shlex.join(sys.argv[1:])}`. Cases run: "
                 + ", ".join(f"({g}) {GROUPS[g][0]}" for g in ran_groups) + ".")
    lines.append("")
    lines.append("## Machine")
    lines.append("")
    for k, val in m.items():
        lines.append(f"* {k}: {val}")
    lines.append("* data on tmpfs (`/dev/shm`), everything over 127.0.0.1")
    lines.append("")
    lines.append("## Tools")
    lines.append("")
    for k, val in v.items():
        lines.append(f"* {k}: `{val}`")
    lines.append(f"* cipher {CIPHER} (via `-F` ssh_config: rscp, scp, rsync's ssh), compression off, `-q`; "
                 "pscp negotiates its own preferred cipher (it has no cipher option)")
    lines.append("")
    lines.append("## Results")
    lines.append("")
    lines.append(f"Median wall time over the successful runs, min–max spread, throughput of the payload, "
                 f"speed ratio against OpenSSH `scp -O` measured in the same interleaved rounds "
                 f"(> 1 = faster than `scp -O`), median user+sys CPU time of the client process tree, "
                 f"peak RSS of the client (largest process of its tree). Pass/fail is for rscp only: "
                 f"the ratio target of the case and peak RSS ≤ {RSS_LIMIT_MIB} MiB.")
    lines.append("")
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "---|" * len(HEADER))
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in fmt_row(r)) + " |")
    lines.append("")
    lines.append("Cases: " + "; ".join(f"**{c.cid}** {c.title}" for c in dict.fromkeys(r["case"] for r in rows)) + ".")
    lines.append("")
    if chart_ok:
        lines.append("![ratios to scp -O](benchmarks.png)")
        lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| case | rscp target against `scp -O` |")
    lines.append("|---|---|")
    def wording(t):
        return f"≥ {t:g}x" if t and t > 1 else ("no slower (≥ 1x)" if t else "reported, no target yet")
    for g, (title, t) in GROUPS.items():
        lines.append(f"| ({g}) {title} | {wording(t)}, peak RSS ≤ {RSS_LIMIT_MIB} MiB |")
        for c in dict.fromkeys(r["case"] for r in rows):
            if c.group == g and c.own_target is not None:
                lines.append(f"| {c.cid}: {c.title} | {wording(c.target)}, peak RSS ≤ {RSS_LIMIT_MIB} MiB |")
    lines.append("")
    if notes:
        lines.append("## Skipped and notes")
        lines.append("")
        for n in notes:
            lines.append(f"* {n}")
        lines.append("")
    # The hand-written analysis (what limits each case) follows the generated part.
    limits = os.path.join(ROOT, "bench", "limits.md")
    if os.path.exists(limits):
        with open(limits) as f:
            lines.append(f.read().rstrip("\n"))
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


# --------------------------------------------------------------------------


def build_delay_proxy():
    """Builds bench/delay-proxy; returns its path, or None (the Python proxy is used)."""
    log("building the delay proxy (cargo build --release -p rscp-delay-proxy) ...")
    r = subprocess.run(["cargo", "build", "--release", "-p", "rscp-delay-proxy"], cwd=ROOT)
    path = os.path.join(ROOT, "target", "release", "delay-proxy")
    if r.returncode != 0 or not os.path.exists(path):
        log("delay proxy did not build: using bench/delay_proxy.py")
        return None
    return path


def main():
    ap = argparse.ArgumentParser(description="rscp side-by-side benchmark (not run by CI)")
    ap.add_argument("--runs", type=int, default=None, help="runs per tool and case (default 5, --quick 3)")
    ap.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB, 1,000 files instead of 10,000")
    ap.add_argument("--cases", default="a,b,c,d,e,f", help="comma-separated case groups: a,b,c,d,e,f")
    ap.add_argument("--rscp", help="rscp binary to use (default: cargo build --release --bin rscp)")
    ap.add_argument("--rscpd", help="rscpd binary for case f (skipped without it)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per tool run (default 300, --quick 120)")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="delay per direction for case d (default 20)")
    ap.add_argument("--note", default="", help="a line of text to put at the top of docs/benchmarks.md")
    ap.add_argument("--no-docs", action="store_true", help="print the table only; do not write docs/")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--tools", default="",
                    help="comma-separated subset for a quick look (rscp,scp-O,scp-sftp,rsync,pscp); "
                         "rscp and scp-O always run, the ratios need them")
    args = ap.parse_args()
    if args.tools:
        args.no_docs = True  # docs/benchmarks.md always compares every tool
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.timeout is None:
        args.timeout = 120.0 if args.quick else 300.0
    groups = [g.strip() for g in args.cases.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown case(s) {','.join(bad)}; known: {','.join(GROUPS)}")
    if os.geteuid() != 0:
        log("note: not root; sshd may refuse to start (it needs /run/sshd and to switch users)")

    rscp = args.rscp
    if not rscp:
        log("building rscp (cargo build --release --bin rscp) ...")
        subprocess.run(["cargo", "build", "--release", "--bin", "rscp"], cwd=ROOT, check=True)
        rscp = os.path.join(ROOT, "target", "release", "rscp")
    rscp = os.path.abspath(rscp)

    env = Env(args)
    notes, all_rows, ran = [], [], []
    try:
        env.start_sshd()
        if "d" in groups:
            env.start_proxy(build_delay_proxy())
            notes.append(f"(d): the delay proxy is `{env.proxy_name}`.")
        rscpd_ok = False
        if "f" in groups:
            if not args.rscpd:
                log("(f) skipped: rscpd not built yet")
                notes.append("(f) rscp->rscpd vs scp -O->sshd: skipped: rscpd not built yet (give `--rscpd PATH`).")
            elif env.start_rscpd(os.path.abspath(args.rscpd)):
                rscpd_ok = True
            else:
                log("(f) skipped: rscpd did not start (see rscpd_argv() in bench/run.py)")
                notes.append("(f) skipped: rscpd did not start; its command line is built by `rscpd_argv()` in bench/run.py.")
        env.write_client_config()
        env.make_data()
        tools, skipped = make_tools(env, rscp)
        if args.tools:
            wanted = {"rscp", "scp-O", *(t.strip() for t in args.tools.split(","))}
            tools = [t for t in tools if t.key in wanted]
        notes += skipped
        notes += [f"{t.label}: {t.note}" for t in tools if t.note]
        for case in make_cases(env):
            if case.group not in groups:
                continue
            if case.group == "f":
                if not rscpd_ok:
                    continue
                base = next(t for t in tools if t.key == "scp-O")
                sshd_scp = Tool("scp-O", "scp -O -> sshd", base.argv_fn)
                sshd_scp.endpoint = "sshd"
                to_rscpd = Tool("rscp-rscpd", "rscp -> rscpd", tools[0].argv_fn)
                to_rscpd.endpoint = "rscpd"
                case_tools = [to_rscpd, sshd_scp]
                sftp = next((t for t in tools if t.key == "rscp-s"), None)
                if sftp and case.direction in sftp.directions:
                    sftp_to_rscpd = Tool("rscp-s-rscpd", "rscp -s -> rscpd", sftp.argv_fn, directions=sftp.directions)
                    sftp_to_rscpd.endpoint = "rscpd"
                    case_tools.insert(1, sftp_to_rscpd)
            else:
                case_tools = tools
            log(f"({case.cid}) {case.title}: {args.runs} rounds x {len(case_tools)} tools")
            results = run_case(env, case, case_tools, args.runs, args.timeout)
            all_rows += summarize(env, case, case_tools, results)
            if case.group not in ran:
                ran.append(case.group)
    finally:
        env.stop()

    log("")
    print_table(all_rows)
    for n in notes:
        log("note:", n)
    if args.no_docs or not all_rows:
        return
    chart_ok = False
    try:
        write_chart(all_rows, os.path.join(ROOT, "docs", "benchmarks.png"))
        chart_ok = True
    except ImportError:
        notes.append("chart not drawn: matplotlib missing (pip install -r bench/requirements.txt)")
    write_markdown(os.path.join(ROOT, "docs", "benchmarks.md"), args, env, all_rows, notes, rscp, ran, chart_ok)
    log("wrote docs/benchmarks.md" + (" and docs/benchmarks.png" if chart_ok else ""))


if __name__ == "__main__":
    main()
