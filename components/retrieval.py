"""Leave-one-out retrieval metrics over embeddings.

Every item queries all the others, ranked by L2 distance (nearest first); a result is
relevant when it has the query's label, and the query itself is excluded by index (not by
distance, so exact duplicates of the query still count as results). Tied distances are
treated as one rank step, the same convention as scikit-learn's average_precision_score.
"""
from typing import Dict

import numpy as np
from scipy.spatial import distance


def average_precisions(embeddings: np.ndarray, labels: np.ndarray,
                       chunk_size: int = 1024) -> np.ndarray:
  """Average precision of each item as a query; NaN where no other item shares its label."""
  embeddings = np.asarray(embeddings, dtype=np.float64)
  labels = np.asarray(labels)
  n = len(labels)
  if embeddings.ndim != 2 or len(embeddings) != n:
    raise ValueError(f'embeddings {embeddings.shape} and labels {labels.shape} do not match')
  result = np.full(n, np.nan)
  for start in range(0, n, chunk_size):
    block = distance.cdist(embeddings[start:start + chunk_size], embeddings, 'euclidean')
    for offset, distances in enumerate(block):
      query = start + offset
      others = np.arange(n) != query
      result[query] = _average_precision(distances[others], labels[others] == labels[query])
  return result


def _average_precision(distances: np.ndarray, relevant: np.ndarray) -> float:
  total_relevant = relevant.sum()
  if total_relevant == 0:
    return np.nan
  order = np.argsort(distances, kind='stable')
  distances, relevant = distances[order], relevant[order]
  # The last index of each group of equal distances: precision is read only there.
  ends = np.flatnonzero(np.append(distances[1:] != distances[:-1], True))
  hits = np.cumsum(relevant)[ends]
  new_hits = np.diff(np.concatenate(([0], hits)))
  precision = hits / (ends + 1)
  return float(np.sum(new_hits * precision) / total_relevant)


def mean_average_precision(embeddings: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
  """mAP over the queries that have at least one relevant item, and how many were skipped."""
  ap = average_precisions(embeddings, labels)
  valid = ~np.isnan(ap)
  return {'map': float(ap[valid].mean()) if valid.any() else float('nan'),
          'queries': int(valid.sum()), 'queries_without_relevant': int((~valid).sum())}


def nearest(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Exact k nearest gallery rows of each query by L2 distance: (indices, distances), each
  (num_queries, min(k, len(gallery))), nearest first; ties keep gallery order."""
  queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
  gallery = np.asarray(gallery, dtype=np.float64)
  if queries.shape[1] != gallery.shape[1]:
    raise ValueError(f'queries have dimension {queries.shape[1]}, the gallery {gallery.shape[1]}')
  # |q - g|^2 = |q|^2 + |g|^2 - 2 q.g: one matrix product (BLAS) for all pairs.
  squared = ((queries ** 2).sum(axis=1)[:, None] + (gallery ** 2).sum(axis=1)[None, :]
             - 2.0 * queries @ gallery.T)
  distances = np.sqrt(np.maximum(squared, 0.0))
  order = np.argsort(distances, axis=1, kind='stable')[:, :k]
  return order, np.take_along_axis(distances, order, axis=1)
