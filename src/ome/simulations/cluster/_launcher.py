"""Start and stop a local control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, as child processes on loopback ports.

Every child runs in its own session (its pid is its process group), so a stop signals the
whole group. Children are stopped by `stop()`, by the context manager, at interpreter exit
(atexit), on SIGTERM/SIGHUP (handler installed from the main thread), and, unless the
cluster is meant to outlive its parent (`tie_to_parent=False`, used by `ome cluster up
--detach`), by the kernel when the parent dies (PR_SET_PDEATHSIG), which covers SIGKILL.
A pid file (`cluster.json` in the cluster folder) lets `ome cluster down` stop a detached one.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx

from ome.domain import Node, OmeError

from . import _config, _nodes, _pki
from ._binaries import Binaries, find_binaries

PID_FILE = "cluster.json"
LOG_TAIL_LINES = 40
STOP_GRACE_S = 5.0
START_ATTEMPTS = 3  # a start is repeated on fresh ports when a component finds its port taken

Step = Callable[[str], None]  # progress messages for a front end


class ClusterError(OmeError, RuntimeError):
    """A component failed to start, died, or the cluster folder is in use."""


class ComponentError(ClusterError):
    """One component failed; the message names it and shows the tail of its log."""

    def __init__(self, component: str, problem: str, log: Path | None) -> None:
        self.component = component
        self.log = log
        tail = log_tail(log) if log is not None else ""
        where = f"\n--- last lines of {log} ---\n{tail}" if tail else (f" (log: {log}, empty)" if log else "")
        super().__init__(f"{component}: {problem}{where}")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    directory: Path | None = None
    """Folder for certificates, configs, etcd data, logs and the pid file. None: a temporary
    folder, removed by stop(). An existing folder is reused once no cluster runs in it."""
    binaries_dir: Path | None = None
    """Folder with the binaries. None: $OME_CONTROLPLANE_BIN, else the build cache."""
    extender_url: str | None = None
    """kube-scheduler extender urlPrefix (e.g. http://127.0.0.1:8888/scheduler); None: stock scheduler."""
    controller_manager: bool = True
    """Run kube-controller-manager (Deployments, namespace deletion, GC). Off saves ~150 MiB."""
    tie_to_parent: bool = True
    """Children die with the thread that started them (Linux PR_SET_PDEATHSIG). False for --detach."""
    start_timeout_s: float = 90.0
    """Per component, for its health endpoint to answer. 2-core machines need tens of seconds."""
    node_ready_timeout_s: float = 120.0
    """For every created node to be marked Ready by kwok."""


# The controllers a kubelet-less GPU cluster uses. No node-lifecycle-controller: kwok keeps no
# leases, so it would mark every node NotReady. No service-account tokens (admission is off).
CONTROLLERS = (
    "namespace-controller", "garbage-collector-controller", "pod-garbage-collector-controller",
    "replicaset-controller", "deployment-controller", "statefulset-controller", "daemonset-controller",
    "job-controller", "cronjob-controller", "ttl-after-finished-controller", "disruption-controller",
    "taint-eviction-controller", "serviceaccount-controller", "resourcequota-controller",
)


@dataclass(slots=True)
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    binary: Path


@dataclass(slots=True)
class _Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held together while picking, so they do not collide)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class LocalCluster:
    """A real control plane with kwok nodes. Use as a context manager, or start()/stop().

    >>> with LocalCluster(ClusterSettings()) as cluster:   # doctest: +SKIP
    ...     cluster.add_nodes(synthetic_nodes(8))
    ...     print(cluster.kubeconfig)
    """

    def __init__(self, settings: ClusterSettings | None = None) -> None:
        self.settings = settings or ClusterSettings()
        self._temporary = self.settings.directory is None
        self.directory = (Path(tempfile.mkdtemp(prefix="ome-cluster-")) if self.settings.directory is None
                          else Path(self.settings.directory).resolve())
        self.kubeconfig = self.directory / "kubeconfig"
        self.logs = self.directory / "logs"
        self.server = ""
        self._binaries: Binaries | None = None
        self._pki: _pki.Pki | None = None
        self._ports: _Ports | None = None
        self._processes: list[_Process] = []
        self._lock = threading.RLock()  # re-entered when a signal handler stops mid-start
        self._stopped = False
        self._owns_directory = self._temporary  # False until start() found no other cluster in it
        self._ssl: ssl.SSLContext | None = None

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, nodes: Sequence[Node] = (), step: Step | None = None,
              node_progress: _nodes.Progress | None = None) -> LocalCluster:
        """Start every component, create `nodes`, return once all are healthy and the nodes Ready.

        On failure everything started so far is stopped and ComponentError names the culprit.
        """
        say = step or (lambda _msg: None)
        _watch_for_exit(self)
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    self._start_once(nodes, say, node_progress)
                    break
                except ComponentError as exc:
                    # Free ports are picked, then released for the component to bind: another
                    # process can take one in between. Start over on fresh ports.
                    if attempt == START_ATTEMPTS or "address already in use" not in str(exc):
                        raise
                    say(f"{exc.component} found its port taken; starting again on other ports")
                    self._stop_processes()
        except BaseException:
            self.stop()
            raise
        say("ready")
        return self

    def _start_once(self, nodes: Sequence[Node], say: Step, node_progress: _nodes.Progress | None) -> None:
        self._prepare(say)
        self._start_etcd(say)
        self._start_apiserver(say)
        self._start_clients(say)
        if nodes:
            say(f"creating {len(nodes)} nodes")
            self.add_nodes(nodes, progress=node_progress, wait=False)
        self._wait_clients(say)
        if nodes:
            say(f"waiting for {len(nodes)} nodes to be Ready")
            self.wait_nodes_ready([n.name for n in nodes], progress=node_progress)

    def stop(self) -> None:
        """Stop every child (clients first, then the apiserver, then etcd). Safe to call twice."""
        with self._lock:
            if self._stopped and not self._processes:
                return
            self._stopped = True
        self._stop_processes()
        _forget(self)
        if self._owns_directory:  # never the pid file of another cluster that runs in the folder
            with contextlib.suppress(FileNotFoundError):
                (self.directory / PID_FILE).unlink()
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_processes(self) -> None:
        with self._lock:
            processes, self._processes = self._processes, []
        by_name = {p.name: p for p in processes}
        waves = [["kwok", "kube-scheduler", "kube-controller-manager"], ["kube-apiserver"], ["etcd"]]
        for wave in waves:
            group = [by_name.pop(n) for n in wave if n in by_name]
            _terminate([(p.popen.pid, p.popen) for p in group])
        _terminate([(p.popen.pid, p.popen) for p in by_name.values()])

    def detach(self) -> None:
        """Leave the processes running after this Python process exits (`ome cluster up --detach`)."""
        if self.settings.tie_to_parent:
            raise ClusterError("cannot detach a cluster started with tie_to_parent=True")
        if self._temporary:
            raise ClusterError("cannot detach a cluster in a temporary folder; give it a directory")
        with self._lock:
            self._processes = []
            self._stopped = True
        _forget(self)

    # ----------------------------------------------------------------- queries

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self._processes}

    def check_alive(self) -> None:
        """Raise ComponentError for the first child that has exited."""
        for p in list(self._processes):
            code = p.popen.poll()
            if code is not None:
                raise ComponentError(p.name, f"exited with code {code}", p.log)

    def ready(self) -> bool:
        """Every child runs and the apiserver answers /readyz."""
        if not self._processes:
            return False
        try:
            self.check_alive()
            with self.http(timeout=5) as client:
                return client.get("/readyz").status_code == 200
        except (ClusterError, httpx.HTTPError):
            return False

    def http(self, timeout: float = 30.0) -> httpx.Client:
        """An httpx client for the apiserver, authenticated as admin (system:masters)."""
        if self._ssl is None:
            raise ClusterError("cluster not started")
        return httpx.Client(base_url=self.server, verify=self._ssl, timeout=timeout, trust_env=False,
                            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def add_nodes(self, nodes: Sequence[Node], progress: _nodes.Progress | None = None, wait: bool = True,
                  taints: Sequence[_nodes.Taint] = ()) -> None:
        """Create kwok GPU nodes (concurrent raw-JSON POSTs); by default wait until they are Ready."""
        with self.http() as client:
            _nodes.create_nodes(client, nodes, progress=progress, taints=taints)
        if wait:
            self.wait_nodes_ready([n.name for n in nodes], progress=progress)

    def wait_nodes_ready(self, names: Sequence[str], progress: _nodes.Progress | None = None,
                         timeout_s: float | None = None) -> None:
        with self.http() as client:
            _nodes.wait_ready(client, names, timeout_s or self.settings.node_ready_timeout_s,
                              progress=progress, alive=self.check_alive)

    def wait(self, poll_s: float = 1.0) -> None:
        """Block until a component dies (raises ComponentError); for `ome cluster up` in the foreground."""
        while True:
            self.check_alive()
            time.sleep(poll_s)

    # ----------------------------------------------------------------- start steps

    def _prepare(self, say: Step) -> None:
        self._binaries = find_binaries(self.settings.binaries_dir)
        if not self._temporary:
            running = running_processes(self.directory)
            if running:
                raise ClusterError(f"a cluster already runs in {self.directory} "
                                   f"({', '.join(running)}); stop it with: ome cluster down --dir {self.directory}")
            self._owns_directory = True
            self.directory.mkdir(parents=True, exist_ok=True)
        for stale in ("etcd-data", "logs", "pki", "certs", PID_FILE, "kubeconfig"):  # from a stopped run
            path = self.directory / stale
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        self.logs.mkdir(parents=True, exist_ok=True)
        say("generating certificates")
        self._pki = _pki.generate(self.directory / "pki")
        self._ports = _Ports(*_free_ports(6))
        self.server = f"https://127.0.0.1:{self._ports.apiserver}"
        _config.write_yaml(self.kubeconfig, _config.kubeconfig(self.server, self._pki))
        self.kubeconfig.chmod(0o600)
        self._ssl = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        self._ssl.load_cert_chain(str(self._pki.admin_cert), str(self._pki.admin_key))
        self._write_pid_file()

    def _spawn(self, name: str, binary: Path, args: list[str]) -> _Process:
        log = self.logs / f"{name}.log"
        env = dict(os.environ)
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        with log.open("ab") as out:
            try:
                popen = subprocess.Popen(
                    [str(binary), *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.directory, env=env, start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()) if self.settings.tie_to_parent else None,
                )
            except OSError as exc:
                raise ComponentError(name, f"cannot execute {binary}: {exc}", None) from exc
        process = _Process(name, popen, log, binary)
        with self._lock:
            if self._stopped:  # stop() ran meanwhile (signal): do not leave this one behind
                _terminate([(popen.pid, popen)])
                raise ClusterError("cluster stopped while starting")
            self._processes.append(process)
        self._write_pid_file()
        return process

    def _wait_healthy(self, process: _Process, url: str, client: httpx.Client,
                      ok: Callable[[httpx.Response], bool] | None = None) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        last = "no answer"
        while True:
            code = process.popen.poll()
            if code is not None:
                raise ComponentError(process.name, f"exited with code {code} while starting", process.log)
            try:
                response = client.get(url)
                if ok(response) if ok is not None else response.status_code == 200:
                    return
                last = f"HTTP {response.status_code} from {url}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__} from {url}"
            if time.monotonic() > deadline:
                raise ComponentError(process.name, f"not healthy after {self.settings.start_timeout_s:.0f}s ({last})",
                                     process.log)
            time.sleep(0.25)

    def _start_etcd(self, say: Step) -> None:
        assert self._binaries and self._ports
        say("starting etcd")
        p = self._ports
        peer = f"http://127.0.0.1:{p.etcd_peer}"
        client_url = f"http://127.0.0.1:{p.etcd}"
        proc = self._spawn("etcd", self._binaries.etcd, [
            "--name=ome", f"--data-dir={self.directory / 'etcd-data'}",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=ome={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",  # throw-away data: fsync costs more than anything else on a slow disk
            "--quota-backend-bytes=4294967296", "--log-level=warn",
        ])
        with httpx.Client(timeout=2, trust_env=False) as client:
            self._wait_healthy(proc, f"{client_url}/health", client,
                               lambda r: r.status_code == 200 and r.json().get("health") == "true")

    def _start_apiserver(self, say: Step) -> None:
        assert self._binaries and self._ports and self._pki
        say("starting kube-apiserver")
        p, k = self._ports, self._pki
        proc = self._spawn("kube-apiserver", self._binaries.kube_apiserver, [
            f"--etcd-servers=http://127.0.0.1:{p.etcd}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={p.apiserver}",
            f"--tls-cert-file={k.apiserver_cert}", f"--tls-private-key-file={k.apiserver_key}",
            f"--client-ca-file={k.ca_cert}", "--authorization-mode=RBAC",
            f"--service-account-issuer=https://127.0.0.1:{p.apiserver}",
            f"--service-account-key-file={k.sa_pub}", f"--service-account-signing-key-file={k.sa_key}",
            f"--service-cluster-ip-range={_config.SERVICE_CIDR}",
            # ServiceAccount: no kubelet mounts tokens, and the admission would race the serviceaccount
            # controller. TaintNodesByCondition: it taints every new node not-ready:NoSchedule, and only
            # the node-lifecycle-controller (which needs node leases) would ever lift that taint.
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition", "--allow-privileged=true",
            "--endpoint-reconciler-type=none", "--profiling=false",
            # Bulk node and pod creation; admin (system:masters) is exempt from priority and fairness anyway.
            "--max-requests-inflight=1000", "--max-mutating-requests-inflight=500",
            f"--cert-dir={self.directory / 'certs' / 'apiserver'}", "--v=1",
        ])
        with self.http(timeout=5) as client:
            self._wait_healthy(proc, "/readyz", client)
            self._wait_healthy(proc, "/api/v1/namespaces/default", client)

    def _start_clients(self, say: Step) -> None:
        assert self._binaries and self._ports and self._pki
        b, p, kc = self._binaries, self._ports, str(self.kubeconfig)
        certs = self.directory / "certs"
        common = ["--bind-address=127.0.0.1", f"--authentication-kubeconfig={kc}",
                  f"--authorization-kubeconfig={kc}"]
        if self.settings.controller_manager:
            say("starting kube-controller-manager")
            self._spawn("kube-controller-manager", b.kube_controller_manager, [
                f"--kubeconfig={kc}", *common, f"--secure-port={p.controller_manager}",
                f"--cert-dir={certs / 'controller-manager'}", "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}", f"--root-ca-file={self._pki.ca_cert}",
                f"--service-account-private-key-file={self._pki.sa_key}", "--use-service-account-credentials=false",
                "--kube-api-qps=1000", "--kube-api-burst=2000", "--concurrent-replicaset-syncs=10",
                "--concurrent-deployment-syncs=10", "--v=1",
            ])
        say("starting kube-scheduler" + (f" (extender {self.settings.extender_url})"
                                         if self.settings.extender_url else ""))
        sched_config = _config.write_yaml(self.directory / "scheduler.yaml",
                                          _config.scheduler_config(self.kubeconfig, self.settings.extender_url))
        self._spawn("kube-scheduler", b.kube_scheduler, [
            f"--config={sched_config}", *common, f"--secure-port={p.scheduler}",
            f"--cert-dir={certs / 'scheduler'}", "--v=1",
        ])
        say("starting kwok")
        kwok_config = self.directory / "kwok.yaml"
        kwok_config.write_text(_config.kwok_config(b.kwok_stages))
        self._spawn("kwok", b.kwok, [
            f"--kubeconfig={kc}", f"--config={kwok_config}", "--manage-all-nodes=true",
            f"--cidr={_config.POD_CIDR}", f"--server-address=127.0.0.1:{p.kwok}",
        ])

    def _wait_clients(self, say: Step) -> None:
        assert self._ports
        say("waiting for the scheduler, controller manager and kwok")
        # Their serving certificates are self-signed in memory; /healthz is all we read.
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        by_name = {p.name: p for p in self._processes}
        with httpx.Client(timeout=5, verify=insecure, trust_env=False) as client:
            if "kube-controller-manager" in by_name:
                self._wait_healthy(by_name["kube-controller-manager"],
                                   f"https://127.0.0.1:{self._ports.controller_manager}/healthz", client)
            self._wait_healthy(by_name["kube-scheduler"], f"https://127.0.0.1:{self._ports.scheduler}/healthz", client)
            self._wait_healthy(by_name["kwok"], f"http://127.0.0.1:{self._ports.kwok}/healthz", client)

    def _write_pid_file(self) -> None:
        data: dict[str, Any] = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "processes": [{"name": p.name, "pid": p.popen.pid, "binary": str(p.binary)} for p in self._processes],
        }
        tmp = self.directory / (PID_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.directory / PID_FILE)


# --------------------------------------------------------------------- stopping processes


def _terminate(targets: Sequence[tuple[int, subprocess.Popen[bytes] | None]]) -> None:
    """SIGTERM each process group, wait up to STOP_GRACE_S, then SIGKILL what is left."""
    for pid, _ in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for pid, popen in targets:
        while _running(pid, popen) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(pid, popen):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if popen is not None:
                popen.wait()
            else:
                while _running(pid, None):
                    time.sleep(0.05)
        # The group may hold children of the component (none of ours fork, but be sure).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _running(pid: int, popen: subprocess.Popen[bytes] | None) -> bool:
    if popen is not None:
        return popen.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _owned(entry: dict[str, Any]) -> bool:
    """The pid still runs the binary we started (not a recycled pid)."""
    try:
        exe = os.readlink(f"/proc/{int(entry['pid'])}/exe")
    except (OSError, KeyError, ValueError):
        return False
    return exe.removesuffix(" (deleted)") == str(Path(entry["binary"]).resolve())


def _pid_entries(directory: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((Path(directory) / PID_FILE).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read {Path(directory) / PID_FILE}: {exc}") from exc
    return list(data.get("processes", []))


def running_processes(directory: Path) -> list[str]:
    """Names of the components recorded in the folder's pid file that still run."""
    return [e["name"] for e in _pid_entries(directory) if _owned(e) and _running(int(e["pid"]), None)]


def stop_directory(directory: str | os.PathLike[str]) -> list[str]:
    """Stop a (detached) cluster from its pid file; return the names of the components stopped."""
    directory = Path(directory)
    entries = [e for e in _pid_entries(directory) if _owned(e) and _running(int(e["pid"]), None)]
    order = ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
    entries.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else -1)
    clients = [e for e in entries if e["name"] not in ("kube-apiserver", "etcd")]
    for wave in (clients, [e for e in entries if e["name"] == "kube-apiserver"],
                 [e for e in entries if e["name"] == "etcd"]):
        _terminate([(int(e["pid"]), None) for e in wave])
    with contextlib.suppress(FileNotFoundError):
        (directory / PID_FILE).unlink()
    return [e["name"] for e in entries]


# --------------------------------------------------------------------- process-wide safety net

_LIVE: list[LocalCluster] = []
_LIVE_LOCK = threading.Lock()
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_installed: set[int] = set()


def _stop_all() -> None:
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for cluster in clusters:
        with contextlib.suppress(Exception):
            cluster.stop()


def _forget(cluster: LocalCluster) -> None:
    with _LIVE_LOCK:
        if cluster in _LIVE:
            _LIVE.remove(cluster)


def _on_signal(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        _stop_all()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # default action: die of the same signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


def _watch_for_exit(cluster: LocalCluster) -> None:
    with _LIVE_LOCK:
        _LIVE.append(cluster)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still applies
    for sig in _HANDLED_SIGNALS:
        if sig not in _installed:
            signal.signal(sig, _on_signal(signal.getsignal(sig)))
            _installed.add(sig)


atexit.register(_stop_all)


@contextlib.contextmanager
def running_cluster(settings: ClusterSettings | None = None, nodes: Sequence[Node] = ()) -> Iterator[LocalCluster]:
    """`with running_cluster(nodes=...) as c:` — start with nodes, always stop."""
    cluster = LocalCluster(settings)
    try:
        cluster.start(nodes)
        yield cluster
    finally:
        cluster.stop()

