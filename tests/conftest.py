"""Shared fixtures. Eight CPU devices are simulated before JAX is imported anywhere."""
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from helpers import ROOT, readme_file, require, write_idx_folder  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
  return write_idx_folder(tmp_path_factory.mktemp("tiny_idx"))


@pytest.fixture
def tiny_config(tiny_data_dir):
  from cnnjax import config as config_lib
  return config_lib.load(str(ROOT / "configs" / "tiny.py"), {"data.dir": str(tiny_data_dir)})


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
  """The real MNIST IDX folder, from $CNNJAX_TEST_MNIST_DIR (set by .ci/run)."""
  folder = os.environ.get("CNNJAX_TEST_MNIST_DIR")
  if not folder or not Path(folder).is_dir():
    pytest.skip("real MNIST not available: set CNNJAX_TEST_MNIST_DIR to a folder of the "
                "four IDX files (e.g. ../shared/data/mnist)")
  return Path(folder)




@pytest.fixture
def mylab(tmp_path, monkeypatch):
  """The README's mylab package, importable (as PYTHONPATH=. makes it)."""
  for name in ("nets", "nnx_nets", "arrays"):
    (tmp_path / "mylab").mkdir(exist_ok=True)
    (tmp_path / "mylab" / f"{name}.py").write_text(readme_file(f"mylab/{name}.py"))
  monkeypatch.syspath_prepend(str(tmp_path))
  yield tmp_path
  for module in [m for m in sys.modules if m == "mylab" or m.startswith("mylab.")]:
    del sys.modules[module]


@pytest.fixture(scope="session")
def ray_env(tmp_path_factory):
  """A real single-node Ray cluster for the test session; the environment that makes a
  sweep join it (RAY_ADDRESS; token authentication off, for this private local cluster)."""
  require(importlib.util.find_spec("ray") is not None, "ray is not installed: pip install -e '.[ray]'")
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {"RAY_AUTH_MODE": "disabled"}
  head = subprocess.Popen(
      [shutil.which("ray") or "ray", "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0",
       f"--port={port}", "--include-dashboard=false",
       "--disable-usage-stats", f"--temp-dir={tmp_path_factory.mktemp('ray')}"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
      env=dict(os.environ, **env))
  deadline = time.time() + 60
  while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
    assert time.time() < deadline and head.poll() is None, "the Ray head did not start"
    time.sleep(0.2)
  yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
  os.killpg(head.pid, signal.SIGTERM)
  try:
    head.wait(timeout=10)
  except subprocess.TimeoutExpired:
    pass
  try:
    os.killpg(head.pid, signal.SIGKILL)  # Whatever of the cluster is still shutting down.
  except ProcessLookupError:
    pass
  head.wait()


def _slurm_up() -> bool:
  if not shutil.which("sbatch"):
    return False
  out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
  return out.returncode == 0 and any(s.rstrip("*") in ("idle", "mix", "alloc") for s in out.stdout.split())


@pytest.fixture
def slurm():
  require(importlib.util.find_spec("submitit") is not None and _slurm_up(),
           "no SLURM cluster: pip install -e '.[slurm]' and scripts/slurm-local start")
