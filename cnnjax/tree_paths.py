"""Parameters by path: 'Conv_0/kernel', 'ConvBlock_1/BatchNorm_0/scale', as checkpoints,
`init.skip` and `optimizer.frozen` name them. A pattern (fnmatch: `*`, `?`, `[...]`)
matches a path, or a layer whose path it names: 'Dense_1' matches 'Dense_1/kernel' and
'Dense_1/bias'."""
from __future__ import annotations

import difflib
import fnmatch

import jax

from cnnjax.errors import ConfigError


def _name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def leaves(tree) -> dict:
  """{'a/b/kernel': leaf} of every leaf of `tree`, in its flattening order. A checkpoint
  read without a target names every key as text, where the model's own tree may have
  integer keys (the layers of an NNX list): both give the same paths."""
  return {"/".join(_name(k) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def matches(path: str, patterns) -> bool:
  return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p + "/*")
             for p in patterns)


def check_patterns(tree, patterns, field: str, collections: bool = False) -> None:
  """ConfigError naming `field` for the first pattern that matches no path of `tree`,
  with the closest paths (and layers) it has. With `collections`, `tree` is
  {"params": ..., "batch_stats": ...} and paths are within each collection."""
  trees = tree.values() if collections else [tree]
  paths = [p for t in trees for p in leaves(t)]
  layers = sorted({p.rsplit("/", 1)[0] for p in paths if "/" in p})
  for pattern in patterns:
    if not any(matches(p, [pattern]) for p in paths):
      close = difflib.get_close_matches(pattern, layers + paths, n=3, cutoff=0.3)
      hint = f"; closest: {', '.join(close)}" if close else f"; it has {', '.join(layers or paths)}"
      raise ConfigError(field, f"{pattern!r} matches no parameter of the model{hint}")


def labels(tree, patterns, matched: str, other: str):
  """`tree` with each leaf replaced by `matched` where its path matches, else `other`:
  the labels of optax.multi_transform."""
  names = iter(leaves(tree))
  return jax.tree.map(lambda _: matched if matches(next(names), patterns) else other, tree)
