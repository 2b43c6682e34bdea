"""Reading a user's images and preparing them as MNIST was prepared.

MNIST digits are light on dark, their bounding box scaled to fit 20x20 and centred by
centre of mass in a 28x28 frame. An image that already has the model's input size is
only converted to grayscale and, where it is dark on light, inverted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnjax.errors import DataError


def read_image(path: str | Path) -> np.ndarray:
  """A PNG/JPEG/... file as a float array in [0, 255], (H, W) grayscale; or a .npy array."""
  path = Path(path)
  if path.suffix == ".npy":
    try:
      return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise DataError(f"{path}: not a readable .npy array: {e}") from e
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("L"), np.float32)
  except FileNotFoundError as e:
    raise DataError(f"{path}: no such file") from e
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f"{path}: not a readable image (PNG, JPEG, ...): {e}") from e


def is_dark_on_light(gray: np.ndarray) -> bool:
  """Judged from the border, which is background in a digit image."""
  border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
  return float(border.mean()) > 127.5


def _center_by_mass(digit: np.ndarray, size: int) -> np.ndarray:
  frame = np.zeros((size, size), np.float32)
  h, w = digit.shape
  top, left = (size - h) // 2, (size - w) // 2
  frame[top:top + h, left:left + w] = digit
  total = frame.sum()
  if total > 0:
    ys, xs = np.indices(frame.shape)
    dy = int(round(size / 2 - 0.5 - (ys * frame).sum() / total))
    dx = int(round(size / 2 - 0.5 - (xs * frame).sum() / total))
    frame = np.roll(frame, (dy, dx), axis=(0, 1))
  return frame


def prepare(image: np.ndarray, input_shape: tuple[int, ...], invert: str = "auto",
            path: str = "image") -> np.ndarray:
  """uint8 array of `input_shape` (H, W, 1) from a grayscale image of any size."""
  from PIL import Image
  h, w, channels = input_shape
  array = np.asarray(image, np.float32)
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if array.ndim != 2 or channels != 1:
    raise DataError(f"{path}: expected a grayscale image for a model of input {input_shape}, "
                    f"got an array of shape {np.shape(image)}")
  if array.max() <= 1.0 and array.dtype.kind == "f" and array.max() > 0:
    array = array * 255.0  # Floats in [0, 1].
  if invert == "yes" or (invert == "auto" and is_dark_on_light(array)):
    array = 255.0 - array
  if array.shape != (h, w):
    ys, xs = np.nonzero(array > 0.2 * array.max()) if array.max() > 0 else ([], [])
    if len(ys):
      array = array[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    box = max(1, round(min(h, w) * 20 / 28))  # MNIST: a 20x20 box in 28x28.
    scale = box / max(array.shape)
    new = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
    array = np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(new, Image.LANCZOS))
    array = _center_by_mass(np.clip(array, 0, 255), max(h, w))[:h, :w]
  return np.clip(np.round(array), 0, 255).astype(np.uint8)[..., None]


def as_examples(array: np.ndarray, input_shape: tuple[int, ...], dtype: str | None,
                path: str = "array") -> np.ndarray:
  """(n, *input_shape) examples from an array holding one example of the run's input
  shape or a batch of them (a trailing channel axis of 1 may be left out), of the run's
  data type: integers 0..255 where the run trained on uint8, real numbers otherwise."""
  shape, array = tuple(input_shape), np.asarray(array)
  for one in [shape] + ([shape[:-1]] if shape[-1] == 1 else []):
    if array.shape == one or (array.ndim == len(one) + 1 and array.shape[1:] == one):
      array = array.reshape((-1, *shape))
      break
  else:
    raise DataError(f"{path}: an array of shape {array.shape} is neither one example of the "
                    f"run's input shape {shape} nor a batch of them (N, "
                    f"{', '.join(map(str, shape))})")
  if dtype == "uint8":
    if array.dtype.kind not in "ui" or (array.size and (array.min() < 0 or array.max() > 255)):
      raise DataError(f"{path}: the run trained on uint8 values 0..255; this array holds "
                      f"{array.dtype} values")
    return array.astype(np.uint8)
  if array.dtype.kind not in "uif":
    raise DataError(f"{path}: an array of {array.dtype} values; the run's input is numbers")
  return array.astype(np.float32)
