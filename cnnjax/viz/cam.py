"""Class activation maps (Zhou et al. 2016; Wang et al. 2017 for time series): for a
network that averages its last feature map F globally and feeds that average straight
into the classifier (logits = W^T mean_t F(t) + b), the map of class c is
CAM_c(t) = W[:, c] . F(t), so its mean over positions is the class score minus the bias.
"""
from __future__ import annotations

import numpy as np


def class_activation_maps(params, features: dict[str, np.ndarray],
                          logits: np.ndarray) -> tuple[np.ndarray | None, str]:
  """(CAM (*spatial, classes) of one example, "") from its sown feature maps (no batch
  axis) and logits, or (None, why there is none). The feature map used is the one whose
  CAM gives back the logits: what global average pooling fed the classifier."""
  layer = params.get("classifier") if hasattr(params, "get") else None
  if layer is None or "kernel" not in layer:
    return None, "no 'classifier' dense layer"
  kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
  fits = {name: f for name, f in features.items() if f.ndim >= 2 and f.shape[-1] == kernel.shape[0]}
  for name, fmap in fits.items():
    cam = fmap.astype(np.float64) @ kernel
    scores = cam.reshape(-1, cam.shape[-1]).mean(axis=0) + bias
    if np.allclose(scores, logits, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(logits).max())):
      return cam.astype(np.float32), ""
  return None, ("its classifier does not read the global average of a feature map (class "
                "activation maps need global average pooling straight into the classifier, "
                "e.g. config.model.head='global_avg' and no dense_features)")


def upsample(cam: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
  """A CAM (*cells, classes) resized (linearly) to the input's positions."""
  import jax
  return np.asarray(jax.image.resize(cam, (*spatial, cam.shape[-1]), "linear"))
