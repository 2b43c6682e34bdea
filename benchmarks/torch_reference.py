"""PyTorch reference implementations for the benchmarks (written for cnnjax; needs the
`bench` extra: `pip install -e ".[bench]"`).

  TalkCNN      the talk's network, as configs/mnist_talk.py (SGD, momentum 0.9).
  DefaultCNN   the default model, as configs/mnist.py: conv, max pool, BatchNorm, ReLU
               (pooling first, as config.model.pool_first), dropout 0.1, random shifts of
               up to 2 pixels, label smoothing 0.1, AdamW.
  ExampleNet   the PyTorch MNIST example (pytorch/examples mnist/main.py, default
               config): Adadelta lr 1.0, StepLR gamma 0.7, batch 64.

Data comes in as NumPy arrays (uint8 images (N, 28, 28, 1), int labels) from cnnjax's
IDX reader, so both frameworks start from the same arrays in memory.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = 0.1307, 0.3081


class TalkCNN(nn.Module):
  def __init__(self, c1: int = 8, c2: int = 16):
    super().__init__()
    self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
    self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
    self.fc = nn.Linear(c2 * 7 * 7, 10)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    return self.fc(torch.flatten(x, 1))


class DefaultCNN(nn.Module):
  def __init__(self, c1: int = 32, c2: int = 64, hidden: int = 128, dropout: float = 0.1):
    super().__init__()
    self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(c1, momentum=0.1)
    self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(c2, momentum=0.1)
    self.fc1 = nn.Linear(c2 * 7 * 7, hidden)
    self.fc2 = nn.Linear(hidden, 10)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    x = F.relu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
    x = F.relu(self.bn2(F.max_pool2d(self.conv2(x), 2)))
    x = F.relu(self.fc1(self.dropout(torch.flatten(x, 1))))
    return self.fc2(self.dropout(x))


class ExampleNet(nn.Module):
  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 32, 3, 1)
    self.conv2 = nn.Conv2d(32, 64, 3, 1)
    self.dropout1 = nn.Dropout(0.25)
    self.dropout2 = nn.Dropout(0.5)
    self.fc1 = nn.Linear(9216, 128)
    self.fc2 = nn.Linear(128, 10)

  def forward(self, x):
    x = F.relu(self.conv2(F.relu(self.conv1(x))))
    x = self.dropout1(F.max_pool2d(x, 2))
    x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
    return F.log_softmax(self.fc2(x), dim=1)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
  """Each image moved by its own whole-pixel offset in [-max_shift, max_shift]^2, zeros
  shifted in (as cnnjax.data.transforms.random_shift)."""
  n, c, h, w = x.shape
  padded = F.pad(x, (max_shift,) * 4)
  on = lambda t: t.to(x.device)  # The generator may live on the CPU, x on a GPU.
  dy = on(torch.randint(0, 2 * max_shift + 1, (n,), generator=generator))
  dx = on(torch.randint(0, 2 * max_shift + 1, (n,), generator=generator))
  rows = (dy[:, None] + on(torch.arange(h)))[:, None, :, None]
  cols = (dx[:, None] + on(torch.arange(w)))[:, None, None, :]
  return padded[on(torch.arange(n))[:, None, None, None], on(torch.arange(c))[None, :, None, None],
                rows, cols]


def to_tensor(images: np.ndarray) -> torch.Tensor:
  """uint8 (N, H, W, C) -> normalized float32 (N, C, H, W) in PyTorch's channels_last
  memory format (the pixels as they come, a permuted view): its faster CPU path for these
  networks, several times faster than NCHW for the default model's evaluation.
  Copied first: torch.from_numpy warns about read-only arrays (the IDX reader's are views
  of the file's bytes)."""
  x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float().div_(255.0)
  return (x - MEAN) / STD


def make(name: str, seed: int = 0):
  """(model, optimizer, loss_fn, max_shift) of a reference setup."""
  torch.manual_seed(seed)
  if name == "talk":
    model = TalkCNN()
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), F.cross_entropy, 0
  if name == "default":
    model = DefaultCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=0.003, weight_decay=0.0001)
    return model, opt, lambda logits, y: F.cross_entropy(logits, y, label_smoothing=0.1), 2
  if name == "example":
    model = ExampleNet()
    return model, torch.optim.Adadelta(model.parameters(), lr=1.0), F.nll_loss, 0
  raise ValueError(f"unknown reference {name!r}")


def train_step(model, opt, loss_fn, max_shift, x_uint8: torch.Tensor, y: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
  """One step from a uint8 batch (N, 1, H, W), normalization and augmentation included."""
  x = (x_uint8.float().div_(255.0) - MEAN) / STD
  if max_shift:
    x = random_shift(x, max_shift, generator)
  opt.zero_grad(set_to_none=True)
  loss = loss_fn(model(x), y)
  loss.backward()
  opt.step()
  return loss


@torch.no_grad()
def accuracy(model, images: np.ndarray, labels: np.ndarray, batch: int = 1000,
             device: str = "cpu") -> float:
  model.eval()
  correct = 0
  for start in range(0, len(labels), batch):
    logits = model(to_tensor(images[start:start + batch]).to(device))
    correct += int((logits.argmax(1).cpu().numpy() == labels[start:start + batch]).sum())
  model.train()
  return correct / len(labels)
