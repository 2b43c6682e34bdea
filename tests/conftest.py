"""Shared fixtures. Eight CPU devices are simulated before JAX is imported anywhere."""
import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from helpers import ROOT, readme_file, write_idx_folder  # noqa: E402


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
