"""Fetches a known data set's IDX files once into a cache, verifying checksums."""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

from cnnjax.errors import DataError
from cnnjax.files import atomic_write

# sha256 of the uncompressed files, so any faithful gzip of them verifies.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
}


def cache_dir() -> Path:
  return Path(os.environ.get("CNNJAX_CACHE_DIR", Path.home() / ".cache" / "cnnjax"))


def _download_one(urls, name: str, sha256: str, dest: Path, timeout: float) -> None:
  errors = []
  for base in urls:
    url = f"{base}{name}.gz"
    try:
      with urllib.request.urlopen(url, timeout=timeout) as response:
        packed = response.read()
      raw = gzip.decompress(packed)
    except Exception as e:  # Network, HTTP and gzip errors alike: try the next mirror.
      errors.append(f"{url}: {e}")
      continue
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
      errors.append(f"{url}: sha256 {digest} is not the expected {sha256}")
      continue
    with atomic_write(dest, "wb") as f:  # A killed download leaves no half file.
      f.write(packed)
    return
  raise DataError("could not download " + name + ": " + "; ".join(errors))


def fetch(name: str, folder: Path, urls=None, timeout: float = 10.0) -> Path:
  """Downloads the IDX files of data set `name` into `folder` (skipping those present)."""
  if name not in CHECKSUMS:
    raise DataError(f"cnnjax knows no download for data set {name!r} (known: "
                    f"{', '.join(CHECKSUMS)}); point config.data.dir at its IDX files")
  folder.mkdir(parents=True, exist_ok=True)
  for file, sha256 in CHECKSUMS[name].items():
    dest = folder / f"{file}.gz"
    if not dest.exists():
      print(f"cnnjax: downloading {file}.gz into {folder}", flush=True)
      _download_one(urls or MIRRORS[name], file, sha256, dest, timeout)
  return folder
