"""The digits3d source (MNIST digits as rotated slabs in a cube) and data.project_axis."""
import numpy as np
import pytest
from PIL import Image

from cnnjax import cli, data
from cnnjax.data import digits3d, idx
from cnnjax.errors import ConfigError
from helpers import ROOT


def _load(folder, **fields):
  return data.load(data.config("digits3d", dir=str(folder), num_classes=4, size=8, **fields))


def test_two_builds_give_the_same_volumes_and_mnist_labels(tiny_data_dir, tmp_path, monkeypatch):
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path / "a"))
  a = _load(tiny_data_dir, noise=0.1)
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path / "b"))
  b = _load(tiny_data_dir, noise=0.1)
  assert a.location != b.location  # Two caches: two builds.
  assert a.train_images.shape == (288, 8, 8, 8, 1) and a.train_images.dtype == np.uint8
  assert np.array_equal(a.train_images, b.train_images)
  assert np.array_equal(a.test_images, b.test_images)
  digits = idx.load_folder(tiny_data_dir, 4)
  assert np.array_equal(a.train_labels, digits[1]) and np.array_equal(a.test_labels, digits[3])
  assert a.input_shape == (8, 8, 8, 1) and a.train_images.max() > 200


def test_a_changed_field_builds_a_new_set_and_the_same_fields_reuse_theirs(tiny_data_dir,
                                                                           tmp_path, monkeypatch):
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path))
  first = _load(tiny_data_dir)
  stamp = (tmp_path / "digits3d").stat().st_mtime_ns, sorted((tmp_path / "digits3d").iterdir())
  again = _load(tiny_data_dir)
  assert again.location == first.location
  assert ((tmp_path / "digits3d").stat().st_mtime_ns, sorted((tmp_path / "digits3d").iterdir())) == stamp
  for change in ({"seed": 1}, {"max_rotation": 10.0}, {"thickness": 2.0}, {"noise": 0.2}):
    other = _load(tiny_data_dir, **change)
    assert other.location != first.location, change
    assert not np.array_equal(other.train_images, first.train_images), change
  assert len(list((tmp_path / "digits3d").iterdir())) == 5


def test_without_rotation_each_volume_is_the_scaled_digit_extruded_into_a_slab(tiny_data_dir):
  images = idx.load_folder(tiny_data_dir, 4)[0][:5, ..., 0]
  source = digits3d.Source(size=8, thickness=2.0, max_rotation=0.0)
  volumes = digits3d.volumes(images, 0, source)[..., 0]
  scaled = np.stack([np.asarray(Image.fromarray(im).resize((8, 8), Image.BILINEAR))
                     for im in images])
  for z in range(8):  # Centre 3.5: the slices 3 and 4 are inside the 2-voxel slab.
    expected = scaled if z in (3, 4) else np.zeros_like(scaled)
    assert np.abs(volumes[:, z].astype(int) - expected).max() <= 1, z


def test_rotations_are_uniform_in_the_range_and_orthonormal():
  angles = np.random.default_rng(0).uniform(-np.pi, np.pi, (50, 3))
  r = digits3d.rotation(angles)
  assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-12)
  assert np.allclose(np.linalg.det(r), 1)
  assert np.allclose(digits3d.rotation(np.zeros((1, 3)))[0], np.eye(3))


@pytest.mark.parametrize("field, value, message", [
    ("size", 7, "must be an integer >= 8 voxels, got 7"),
    ("thickness", 0.0, "must be in (0, data.size=16] voxels, got 0.0"),
    ("thickness", 17.0, "must be in (0, data.size=16] voxels, got 17.0"),
    ("noise", -0.1, "must be >= 0, got -0.1"),
    ("max_rotation", 181.0, "must be in [0, 180] degrees, got 181.0"),
    ("max_rotation", -1.0, "must be in [0, 180] degrees, got -1.0"),
])
def test_fields_that_cannot_make_a_volume_fail_before_anything_is_built(
    tmp_path, capsys, monkeypatch, field, value, message):
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path / "cache"))
  assert cli.main(["train", "--config", str(ROOT / "configs" / "digits3d.py"), "--workdir",
                   str(tmp_path / "run"), f"--config.data.{field}={value}"]) == 2
  assert capsys.readouterr().err == f"cnnjax train: error: config.data.{field}: {message}\n"
  assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_project_axis_turns_volumes_into_their_max_or_mean_images(tiny_data_dir):
  volumes = _load(tiny_data_dir)
  for how, reduce in (("max", np.max), ("mean", lambda v, axis: np.round(v.mean(axis)))):
    for axis in (0, 2):
      images = _load(tiny_data_dir, project_axis=axis, projection=how)
      assert images.input_shape == (8, 8, 1) and images.train_images.dtype == np.uint8
      assert np.array_equal(images.test_images, reduce(volumes.test_images, axis=axis + 1))
  with pytest.raises(ConfigError, match=r"config.data.project_axis: projects 3-D volumes held "
                     r"in memory; .* holds examples of shape \(12, 12, 1\)"):
    data.load(data.config("idx", dir=str(tiny_data_dir), num_classes=4, project_axis=0))


@pytest.mark.integration  # Starts a process.
def test_the_set_is_the_same_built_by_a_process_with_one_device(tiny_data_dir, tmp_path,
                                                                 monkeypatch):
  import hashlib
  import os
  import subprocess
  import sys
  digest = lambda d: hashlib.sha256(d.train_images.tobytes() + d.test_images.tobytes()).hexdigest()
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path / "eight"))
  here = digest(_load(tiny_data_dir, noise=0.1))  # This process simulates 8 CPU devices.
  code = ("import hashlib, jax; from cnnjax import data; assert jax.device_count() == 1; "
          f"d = data.load(data.config('digits3d', dir={str(tiny_data_dir)!r}, num_classes=4, "
          "size=8, noise=0.1)); "
          "print(hashlib.sha256(d.train_images.tobytes() + d.test_images.tobytes()).hexdigest())")
  env = dict(os.environ, XLA_FLAGS="", CNNJAX_CACHE_DIR=str(tmp_path / "one"))
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True).stdout.split()[-1]
  assert out == here


def test_a_build_that_fails_leaves_nothing_behind_and_the_next_load_builds(tiny_data_dir,
                                                                          tmp_path, monkeypatch):
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path))
  real = digits3d.volumes

  def fail_on_test(images, split, source, *a):
    if split == digits3d.SPLITS["test"]:
      raise KeyboardInterrupt
    return real(images, split, source, *a)

  monkeypatch.setattr(digits3d, "volumes", fail_on_test)
  with pytest.raises(KeyboardInterrupt):
    _load(tiny_data_dir)
  assert list((tmp_path / "digits3d").iterdir()) == []
  monkeypatch.setattr(digits3d, "volumes", real)
  assert _load(tiny_data_dir).test_images.shape == (60, 8, 8, 8, 1)
