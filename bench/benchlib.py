"""What the bench scripts share: CPU time of processes, curl timings, test files, nginx.

Imported by the scripts in this directory as `benchlib` (a script's own directory is the
first entry of sys.path); the cluster comes from tuggle_agent.harness, never from tests/.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tuggle_agent.harness import free_port

MiB = 2**20
GiB = 2**30
CLK = os.sysconf("SC_CLK_TCK")


def scratch_dir(prefix: str, workdir: str | None = None) -> Path:
    """Where a bench keeps its files: `workdir` if given (kept, to look at afterwards), else
    a temp dir removed when the script exits -- a run leaves GiBs of copies (every node's
    data dir), and `make bench` runs several scripts in a row on one disk."""
    if workdir:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def cpu_split(pid: int | str, children: bool = False) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (with `children`, plus its reaped children's)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(f[11]), int(f[12])
    if children:
        user, system = user + int(f[13]), system + int(f[14])
    return user / CLK, system / CLK


def cpu_seconds(pid: int | str, children: bool = False) -> float:
    """utime + stime of a process (with `children`, plus its reaped children's)."""
    return sum(cpu_split(pid, children))


def curl(args: list[str]) -> float:
    """Seconds taken by one curl transfer (curl's own timer); fails on an HTTP error."""
    out = subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total}", *args], check=True, capture_output=True, text=True
    ).stdout
    return float(out)


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        block = os.urandom(MiB)
        for _ in range(size // MiB):
            f.write(block)
        f.write(os.urandom(size % MiB))


def copy_fsync_seconds(src: Path, dst: Path) -> float:
    """The bound for a store that must write every byte: cp of the file, then fsync."""
    t0 = time.perf_counter()
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())
    took = time.perf_counter() - t0
    dst.unlink()
    return took


def start_nginx(root: Path, work: Path) -> tuple[subprocess.Popen, int]:
    """nginx serving `root` on a free port (sendfile on, as a file server is deployed).

    Its workers run as root when we are root: they must read `root` inside a 0700 temp
    dir (mkdtemp), which nginx's default worker user (nobody / www-data) cannot."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is needed as the reference server: apt-get install -y nginx")
    port = free_port()
    conf = work / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""daemon off; {user} worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 64; }}
http {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; root {root}; }}
  client_body_temp_path {work}/b; proxy_temp_path {work}/p; fastcgi_temp_path {work}/f;
  uwsgi_temp_path {work}/u; scgi_temp_path {work}/s; }}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        if proc.poll() is not None:
            raise SystemExit(f"nginx exited with {proc.returncode}; see {work}/nginx.err")
        try:
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"], check=True)
            break
        except subprocess.CalledProcessError:
            time.sleep(0.05)
    return proc, port
