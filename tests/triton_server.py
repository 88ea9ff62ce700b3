"""Start the real Triton Inference Server (2.51, bundled in nvidia-pytriton) on the CPU for tests, and always
stop it. Recipe and gotchas: ../shared/research/triton.md.

The server runs from ``.venv-triton`` (made by ``make test``): the Python backend's stub needs numpy < 2, and
that environment holds only ``ideogram-trt[runtime]`` — the serving path, without PyTorch — so the tests also
prove the model runs without the export side.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRITON_VENV = ROOT / ".venv-triton"
READY_DEADLINE = 180.0


@dataclass(frozen=True)
class Server:
    http: str
    grpc: str
    metrics: str
    log: Path


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _paths() -> tuple[Path, Path, str]:
    python = TRITON_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{TRITON_VENV} is missing: `make test` creates it (nvidia-pytriton, numpy<2)")
    query = (
        "import importlib.util, sysconfig, pathlib;"
        "s = importlib.util.find_spec('pytriton');"
        "print(pathlib.Path(s.origin).parent / 'tritonserver');"
        "print(sysconfig.get_config_var('LIBDIR'));"
        "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"
    )
    out = subprocess.run([str(python), "-c", query], capture_output=True, text=True, check=True).stdout.split()
    return Path(out[0]), Path(out[1]), out[2]


@contextlib.contextmanager
def triton_server(repository: Path, workdir: Path) -> Iterator[Server]:
    server_dir, libdir, version = _paths()
    backends = workdir / "backends" / "python"
    backends.mkdir(parents=True)
    # Symlinked, not copied: the stub finds its bundled libraries relative to its real location.
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (backends / name).symlink_to(server_dir / "backends" / "python" / name)
    (backends / "triton_python_backend_stub").symlink_to(
        server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    )
    http, grpc, metrics = free_ports(3)
    prefix = f"ideogram_trt_test_{os.getpid()}_"
    log = workdir / "tritonserver.log"
    env = {
        **os.environ,
        "PATH": f"{TRITON_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": str(libdir),
        "OMP_NUM_THREADS": "1",
    }
    temp = Path(tempfile.gettempdir())
    envs_before = set(temp.glob("python_env_*"))
    command = [
        str(server_dir / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={workdir / 'backends'}",
        "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
        f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
        "--exit-timeout-secs=5", "--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0",
        f"--backend-config=python,shm-region-prefix-name={prefix}",
    ]  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_DEADLINE
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver not ready after {READY_DEADLINE:.0f}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield Server(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}", log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for region in Path("/dev/shm").glob(f"{prefix}*"):
            region.unlink(missing_ok=True)
        for folder in set(temp.glob("python_env_*")) - envs_before:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # manual use: python tests/triton_server.py REPO
    with tempfile.TemporaryDirectory() as scratch, triton_server(Path(sys.argv[1]).resolve(), Path(scratch)) as s:
        print(f"ready: http {s.http} grpc {s.grpc} metrics {s.metrics} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
