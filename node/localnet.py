"""`chainmerce localnet up|down|status`: run a testnet directory's nodes as local processes.

`up` starts `chainmerce start --home DIR/nodeI` for each node not already running, detached
in its own session (it outlives the command), with stdout and stderr appended to
DIR/nodeI/node.log and its pid in DIR/nodeI/node.pid, then waits until every RPC answers.
`down` sends SIGTERM, waits a grace period, kill -9s what is left and removes the pid files.
`status` reads each node's pid file and asks its RPC for `status` and `net_info`.

A pid file whose process is gone, or now belongs to another program, is stale: `up` and
`down` remove it and say so. Both commands are idempotent: `up` on a running net starts
nothing, `down` on a stopped one stops nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.client import Client, ClientError
from node.testnet import TestnetManifest, TestnetNode, load_manifest

PID_FILE = "node.pid"
LOG_FILE = "node.log"
READY_TIMEOUT = 30.0
STOP_GRACE = 10.0
_REPO = Path(__file__).resolve().parent.parent


class LocalnetError(Exception):
    """A localnet operation that cannot be done; one line."""


def chainmerce_command() -> list[str]:
    """How to run `chainmerce`: the console script next to this Python, else cli.py."""
    script = Path(sys.executable).parent / "chainmerce"
    if script.exists():
        return [str(script)]
    return [sys.executable, str(_REPO / "cli.py")]


# --- pid files ------------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalnetError(f"{path}: cannot read: {exc.strerror}") from None
    return int(text) if text.isdigit() and int(text) > 0 else -1  # -1: garbage = stale


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie child of ours is reaped and counts as gone)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: the normal case after `localnet up` exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _runs_home(pid: int, home: Path) -> bool:
    """Whether `pid` is a node started for `home` (pids get reused after a reboot)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return str(home).encode() in argv and b"start" in argv


@dataclass(frozen=True, slots=True)
class NodeProcess:
    node: TestnetNode
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.home / LOG_FILE

    def running_pid(self) -> tuple[int | None, bool]:
        """(pid of the running node or None, whether a stale pid file was found)."""
        pid = _read_pid(self.pid_file)
        if pid is None:
            return None, False
        if pid > 0 and process_alive(pid) and _runs_home(pid, self.home):
            return pid, False
        return None, True

    def log_tail(self, lines: int = 1) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) if text else "(empty log)"


def _processes(manifest: TestnetManifest) -> list[NodeProcess]:
    return [NodeProcess(n, manifest.home(n)) for n in manifest.nodes]


def _select(manifest: TestnetManifest, names: list[str] | None) -> list[NodeProcess]:
    procs = _processes(manifest)
    if not names:
        return procs
    by_name = {p.node.name: p for p in procs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise LocalnetError(f"no node {unknown[0]!r} in this testnet "
                            f"(nodes: {', '.join(by_name)})")
    return [by_name[n] for n in names]


# --- up / down / status ---------------------------------------------------------------------


def _spawn(proc: NodeProcess) -> int:
    with open(proc.log_file, "ab") as log:
        log.write(f"\n===== localnet up {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        child = subprocess.Popen(
            [*chainmerce_command(), "start", "--home", str(proc.home)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, cwd=str(proc.home), env=env)
    proc.pid_file.write_text(f"{child.pid}\n")
    return child.pid


def _rpc_height(node: TestnetNode, timeout: float = 2.0) -> int | None:
    try:
        status = Client(node.rpc_url, timeout=timeout).call("status")
        return int(status["sync_info"]["latest_block_height"])
    except (ClientError, KeyError, TypeError, ValueError):
        return None


def up(root: Path, names: list[str] | None = None, *, timeout: float = READY_TIMEOUT,
       report: Callable[[str], None] = lambda _line: None) -> list[dict[str, Any]]:
    """Start the nodes that are not running; wait until each answers RPC."""
    manifest = load_manifest(root)
    procs = _select(manifest, names)
    results: dict[str, dict[str, Any]] = {}
    started: list[tuple[NodeProcess, int]] = []
    for proc in procs:
        pid, stale = proc.running_pid()
        if stale:
            proc.pid_file.unlink(missing_ok=True)
            report(f"{proc.node.name}: removed stale pid file")
        if pid is not None:
            results[proc.node.name] = {"node": proc.node.name, "pid": pid,
                                       "state": "already running"}
            report(f"{proc.node.name}: already running (pid {pid})")
            continue
        started.append((proc, _spawn(proc)))
    deadline = time.monotonic() + timeout
    for proc, pid in started:
        while True:
            if not process_alive(pid):
                proc.pid_file.unlink(missing_ok=True)
                raise LocalnetError(f"{proc.node.name} exited during start-up; last log line: "
                                    f"{proc.log_tail()} (log: {proc.log_file})")
            height = _rpc_height(proc.node)
            if height is not None and process_alive(pid):  # not another program's port
                results[proc.node.name] = {"node": proc.node.name, "pid": pid,
                                           "state": "started", "rpc": proc.node.rpc_url}
                report(f"{proc.node.name}: started (pid {pid}, rpc {proc.node.rpc_url})")
                break
            if time.monotonic() > deadline:
                raise LocalnetError(f"{proc.node.name} (pid {pid}) did not answer RPC at "
                                    f"{proc.node.rpc_url} within {timeout:g}s; see "
                                    f"{proc.log_file}")
            time.sleep(0.1)
    return [results[p.node.name] for p in procs]


def down(root: Path, names: list[str] | None = None, *, grace: float = STOP_GRACE,
         report: Callable[[str], None] = lambda _line: None) -> list[dict[str, Any]]:
    """SIGTERM the running nodes, kill -9 those still alive after `grace`, remove pid files."""
    manifest = load_manifest(root)
    procs = _select(manifest, names)
    results: dict[str, dict[str, Any]] = {}
    signalled: list[tuple[NodeProcess, int]] = []
    for proc in procs:
        pid, stale = proc.running_pid()
        if pid is None:
            proc.pid_file.unlink(missing_ok=True)
            state = "stale pid file removed" if stale else "not running"
            results[proc.node.name] = {"node": proc.node.name, "pid": None, "state": state}
            report(f"{proc.node.name}: {state}")
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        signalled.append((proc, pid))
    deadline = time.monotonic() + grace
    while signalled and time.monotonic() < deadline and \
            any(process_alive(pid) for _, pid in signalled):
        time.sleep(0.1)
    for proc, pid in signalled:
        state = "stopped"
        if process_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            state = f"killed (did not stop within {grace:g}s of SIGTERM)"
            for _ in range(50):
                if not process_alive(pid):
                    break
                time.sleep(0.1)
        proc.pid_file.unlink(missing_ok=True)
        results[proc.node.name] = {"node": proc.node.name, "pid": pid, "state": state}
        report(f"{proc.node.name}: {state} (pid {pid})")
    return [results[p.node.name] for p in procs]


def status(root: Path) -> list[dict[str, Any]]:
    """One row per node: pid and whether it runs, height and peer count from its RPC."""
    manifest = load_manifest(root)
    rows = []
    for proc in _processes(manifest):
        pid, stale = proc.running_pid()
        row: dict[str, Any] = {"node": proc.node.name, "role": proc.node.role,
                               "pid": pid, "alive": pid is not None, "stale_pid_file": stale,
                               "rpc": proc.node.rpc_url, "height": None, "peers": None,
                               "catching_up": None}
        if pid is not None:
            client = Client(proc.node.rpc_url, timeout=2.0)
            try:
                info = client.call("status")
                row["height"] = info["sync_info"]["latest_block_height"]
                row["catching_up"] = info["sync_info"].get("catching_up")
                row["peers"] = client.call("net_info")["n_peers"]
            except (ClientError, KeyError, TypeError):
                pass
        rows.append(row)
    return rows


def status_table(rows: list[dict[str, Any]]) -> str:
    header = ("node", "role", "pid", "alive", "height", "peers", "rpc")
    lines = [[r["node"], r["role"], "-" if r["pid"] is None else str(r["pid"]),
              "yes" if r["alive"] else ("no (stale pid file)" if r["stale_pid_file"] else "no"),
              "-" if r["height"] is None else str(r["height"]),
              "-" if r["peers"] is None else str(r["peers"]), r["rpc"]] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    return "\n".join(out)
