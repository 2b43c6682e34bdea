"""Image folders: `train/<class>/*` and `test/<class>/*`, PNG or JPEG (the layout of
torchvision's ImageFolder and Keras' image_dataset_from_directory).

Class numbers follow the sorted names of the training classes. Images are decoded with
Pillow, converted to `channels` (1: grayscale, 3: RGB) and resized to `size` (height,
width); with size (0, 0) every image must already have the first image's size.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cnnjax import data
from cnnjax.errors import ConfigError, DataError

EXTENSIONS = {".png", ".jpg", ".jpeg"}


@dataclasses.dataclass(frozen=True)
class Source:
  """An image folder: `dir`/train/<class>/*.png|jpg and `dir`/test/<class>/*."""
  dir: str = ""  # The folder; "" = $CNNJAX_DATA_DIR.
  image_size: tuple[int, int] = (0, 0)  # (height, width) to resize to; (0, 0) = as stored.
  channels: int = 3  # 1 (grayscale) or 3 (RGB).

  def __post_init__(self):
    if self.channels not in (1, 3):
      raise ConfigError("data.channels", "must be 1 (grayscale) or 3 (RGB)")
    size = tuple(self.image_size)
    if not (len(size) == 2 and all(s >= 0 for s in size) and (all(size) or not any(size))):
      raise ConfigError("data.image_size", "must be (height, width), or (0, 0) to keep the "
                        "stored size")

  def load(self, num_classes: int) -> data.Splits:
    del num_classes  # data.load checks the labels.
    folder = data.root(self.dir, "an image folder")
    *arrays, class_names = load(folder, self.image_size, self.channels)
    return data.Splits(*arrays, location=f"folder:{folder.resolve()}", class_names=class_names)


def _classes(split_dir: Path) -> dict[str, list[Path]]:
  if not split_dir.is_dir():
    raise DataError(f"{split_dir}: no such folder (an image folder holds train/<class>/ and "
                    f"test/<class>/)")
  classes = {}
  for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
    files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in EXTENSIONS)
    if not files:
      raise DataError(f"{class_dir}: no PNG or JPEG images")
    classes[class_dir.name] = files
  if not classes:
    raise DataError(f"{split_dir}: no class folders with images")
  return classes


def _read(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as image:
      image = image.convert(mode)
      if size and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
      pixels = np.asarray(image, np.uint8)
  except (OSError, UnidentifiedImageError, SyntaxError) as e:
    raise DataError(f"{path}: not a readable image ({e})") from e
  return pixels[..., None] if pixels.ndim == 2 else pixels


def _split(classes: dict[str, list[Path]], numbers: dict[str, int], mode: str,
           size: tuple[int, int] | None):
  images, labels = [], []
  for name, files in classes.items():
    for path in files:
      pixels = _read(path, mode, size)
      if images and pixels.shape != images[0].shape:
        raise DataError(f"{path}: {pixels.shape[1]}x{pixels.shape[0]} pixels, but the first "
                        f"image is {images[0].shape[1]}x{images[0].shape[0]}; set "
                        f"config.data.image_size to resize every image")
      images.append(pixels)
      labels.append(numbers[name])
  return np.stack(images), np.asarray(labels, np.int32)


def load(root: Path, size, channels: int):
  """(train images, train labels, test images, test labels, class names)."""
  size = tuple(size) if any(size) else None
  train, test = _classes(root / "train"), _classes(root / "test")
  unknown = sorted(set(test) - set(train))
  if unknown:
    raise DataError(f"{root / 'test'}: classes {', '.join(unknown)} have no training images "
                    f"in {root / 'train'}")
  numbers = {name: i for i, name in enumerate(train)}
  mode = "L" if channels == 1 else "RGB"
  return (*_split(train, numbers, mode, size), *_split(test, numbers, mode, size), tuple(train))
