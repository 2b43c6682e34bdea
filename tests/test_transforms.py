"""On-device augmentation: exact geometry of rotation and scaling, per-example draws."""
import jax
import numpy as np

from cnnjax.data import transforms


def _image():
  image = np.zeros((9, 9, 1), np.float32)
  image[1, 4, 0] = 200.0  # Above the centre (4, 4).
  image[4, 6, 0] = 100.0  # Right of the centre.
  return image


def test_rotation_by_90_degrees_and_identity_are_exact():
  image = _image()
  np.testing.assert_allclose(transforms.rotate_scale(image, 0.0, 1.0), image, atol=1e-5)
  rotated = np.asarray(transforms.rotate_scale(image, 90.0, 1.0))
  np.testing.assert_allclose(rotated, np.rot90(image, k=-1), atol=1e-4)  # Clockwise.


def test_scaling_moves_pixels_away_from_the_centre():
  zoomed = np.asarray(transforms.rotate_scale(_image(), 0.0, 1.5))
  assert abs(zoomed[4, 7, 0] - 100.0) < 1e-3  # 2 pixels right of centre -> 3.
  assert zoomed[4, 6, 0] < 100.0


def test_random_rotation_draws_per_example_and_fills_with_the_background():
  images = np.repeat(_image()[None], 4, axis=0) - 0.5  # Background -0.5, as standardised.
  keys = jax.random.split(jax.random.key(0), 4)
  out = np.asarray(transforms.random_rotate_scale(images, keys, 30.0, 0.3, fill=-0.5))
  assert out.dtype == np.float32 and out.shape == images.shape
  assert len({o.tobytes() for o in out}) == 4  # Each example its own angle and zoom.
  assert np.allclose(out[:, 0, 0], -0.5) and np.allclose(out[:, -1, -1], -0.5)
  same = transforms.random_rotate_scale(images, keys, 0.0, 0.0, fill=-0.5)
  np.testing.assert_allclose(same, images, atol=1e-5)
