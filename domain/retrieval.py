"""Exact leave-one-out retrieval metrics over embeddings, in bounded memory.

Every item queries all the others, ranked by distance (nearest first); a result is
relevant when it has the query's label, and the query itself is excluded by index (not by
distance, so exact duplicates of the query still count as results, at distance 0).

Ties (docs/metrics.md): items at exactly the same distance form one rank step. AP and the
PR curve read precision only at the end of such a group, as scikit-learn's
average_precision_score and precision_recall_curve do; precision@k and recall@k count a
group that straddles rank k by its expected share under a random order inside the group.
Nothing depends on the order of the input. Bitwise-equal embeddings share one distance
column, so duplicates tie exactly whatever rounding the matrix product does.

How it scales: queries are processed in chunks (one matrix product per chunk, memory
chunk x N); per query only the R relevant distances are sorted and the N others are
counted against them (O(N log R)) instead of sorting all N (O(N log N)).
"""
import dataclasses
import hashlib
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from common import progress as progress_lib

K_VALUES = (1, 5, 10, 50)
NUM_NEIGHBORS = 10
RECALL_LEVELS = tuple(i / 10 for i in range(11))
METRICS = ('l2', 'cosine')
# Working memory for one chunk's distances (and one copy of them), in bytes.
DEFAULT_CHUNK_BYTES = 64 << 20


@dataclasses.dataclass
class RetrievalResult:
  """Per-query results; rows follow the input order. NaN where a query has no relevant item."""
  metric: str
  ks: Tuple[int, ...]
  ap: np.ndarray                   # (N,)
  precision_at_k: np.ndarray       # (N, len(ks))
  recall_at_k: np.ndarray          # (N, len(ks))
  pr_curve: np.ndarray             # (N, 11): interpolated precision at RECALL_LEVELS
  neighbors: np.ndarray            # (N, num_neighbors) int64, -1 padded
  neighbor_distances: np.ndarray   # (N, num_neighbors) float64, inf padded

  @property
  def scored(self) -> np.ndarray:
    return ~np.isnan(self.ap)


def _representatives(vectors: np.ndarray) -> Optional[np.ndarray]:
  """For each row, the index of the first bitwise-equal row; None when all rows differ."""
  first: Dict[bytes, int] = {}
  rep = np.empty(len(vectors), dtype=np.int64)
  for i, row in enumerate(vectors):
    digest = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
    j = first.setdefault(digest, i)
    if j != i and not np.array_equal(vectors[j], row):  # A 128-bit collision: keep apart.
      j = i
    rep[i] = j
  return None if np.array_equal(rep, np.arange(len(vectors))) else rep


def count_duplicates(embeddings: np.ndarray) -> int:
  """Rows bitwise equal to an earlier row."""
  rep = _representatives(np.ascontiguousarray(embeddings))
  return 0 if rep is None else int(np.sum(rep != np.arange(len(rep))))


def _prepare(embeddings: np.ndarray,
             metric: str) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
  """float64 vectors (one copy: 400 MB at N = 50,000 x 1024), per-item key term, direction mask.

  The ranking key (ascending = nearer) of candidate c for query q is term[c] - q.c:
  L2: ||c||^2/2 - q.c (= (||q - c||^2 - ||q||^2) / 2); cosine: -(q.c) of L2-normalised vectors
  (term None).
  """
  vectors = np.array(embeddings, dtype=np.float64)  # A copy: normalised in place below.
  squared = np.einsum('ij,ij->i', vectors, vectors)
  if metric == 'l2':
    return vectors, squared / 2, np.ones(len(vectors), dtype=bool)
  if metric == 'cosine':
    norms = np.sqrt(squared)
    # A zero vector has no direction: similarity 0 to everything (scikit-learn's convention).
    np.divide(vectors, norms[:, None], out=vectors, where=norms[:, None] > 0)
    return vectors, None, norms > 0
  raise ValueError(f'unknown distance {metric!r}; choose one of {", ".join(METRICS)}')


def _distances(vectors: np.ndarray, query: int, others: np.ndarray, metric: str) -> np.ndarray:
  """Distances users read (L2, or 1 - cosine similarity), computed directly for a few items.

  Direct differences avoid the rounding of the ranking keys, and einsum (no BLAS) sums in
  the same order wherever the rows sit, so the values do not depend on the input order.
  """
  if metric == 'l2':
    difference = vectors[others] - vectors[query]
    return np.sqrt(np.einsum('ij,ij->i', difference, difference))
  return 1.0 - np.einsum('ij,j->i', vectors[others], vectors[query])


def evaluate(embeddings: np.ndarray, labels: np.ndarray, metric: str = 'l2',
             ks: Sequence[int] = K_VALUES, num_neighbors: int = NUM_NEIGHBORS,
             ids: Optional[np.ndarray] = None, chunk_size: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> RetrievalResult:
  """Leave-one-out AP, precision/recall@k, 11-point PR curve and nearest neighbours per query.

  Args:
    embeddings: (N, D) array.
    labels: (N,) categories; a result is relevant when its label equals the query's.
    metric: 'l2' (Euclidean) or 'cosine' (1 - cosine similarity).
    ks: cut-offs for precision@k and recall@k (k' = min(k, N - 1)).
    num_neighbors: nearest neighbours kept per query.
    ids: (N,) keys that order equal-distance neighbours (default: the row index).
    chunk_size: queries per matrix product (default: DEFAULT_CHUNK_BYTES worth of distances).
    progress: called with (queries done, N) after every chunk.
  """
  labels = np.asarray(labels)
  embeddings = np.asarray(embeddings)
  n = len(labels)
  if embeddings.ndim != 2 or len(embeddings) != n:
    raise ValueError(f'embeddings {embeddings.shape} and labels {labels.shape} do not match')
  ks = tuple(int(k) for k in ks)
  if n == 0:
    raise ValueError('no embeddings to evaluate')
  vectors, term, directed = _prepare(embeddings, metric)
  rep = _representatives(vectors)
  codes = np.unique(labels, return_inverse=True)[1].reshape(-1)
  members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
  tie_order = np.argsort(np.argsort(ids if ids is not None else np.arange(n), kind='stable'),
                         kind='stable')
  chunk_size = chunk_size or max(1, min(n, DEFAULT_CHUNK_BYTES // (8 * n)))
  num_neighbors = max(0, int(num_neighbors))
  kept = min(num_neighbors, n - 1)
  cutoffs = np.array([min(k, n - 1) for k in ks], dtype=np.float64)
  levels = np.arange(len(RECALL_LEVELS))  # Recall level i/10, compared in integers.

  result = RetrievalResult(
      metric=metric, ks=ks, ap=np.full(n, np.nan),
      precision_at_k=np.full((n, len(ks)), np.nan), recall_at_k=np.full((n, len(ks)), np.nan),
      pr_curve=np.full((n, len(RECALL_LEVELS)), np.nan),
      neighbors=np.full((n, num_neighbors), -1, dtype=np.int64),
      neighbor_distances=np.full((n, num_neighbors), np.inf))
  for start in range(0, n, chunk_size):
    stop = min(n, start + chunk_size)
    queries = np.arange(start, stop)
    keys = vectors[start:stop] @ vectors.T
    if term is None:
      np.negative(keys, out=keys)
    else:
      np.subtract(term[None, :], keys, out=keys)
    # A query's exact duplicates are at distance 0: before everything else, tied together.
    own = rep[queries] if rep is not None else queries
    at_zero = directed[queries]
    keys[np.flatnonzero(at_zero), own[at_zero]] = -np.inf
    if rep is not None:
      keys = keys[:, rep]  # Duplicates take their first copy's column: exact ties.
    keys[np.arange(len(queries)), queries] = np.inf  # Leave the query itself out.
    if kept:
      kth = np.partition(keys, kept - 1, axis=1)[:, kept - 1].copy()  # Not a view: frees.
    for offset, query in enumerate(queries):
      row = keys[offset]
      if kept:
        close = np.flatnonzero(row <= kth[offset])
        close = close[np.lexsort((tie_order[close], row[close]))][:kept]
        result.neighbors[query, :kept] = close
        result.neighbor_distances[query, :kept] = _distances(vectors, query, close, metric)
      relevant = np.sort(row[members[codes[query]]])[:-1]  # The query's own inf sorts last.
      num_relevant = len(relevant)
      if num_relevant == 0:
        continue
      # For each relevant distance t_j: items (of all N - 1) with distance <= t_j and < t_j.
      # position[x] = relevant distances below x, so x <= t_j exactly when position <= j.
      position = np.searchsorted(relevant, row, 'left')
      at_or_below = np.cumsum(np.bincount(position, minlength=num_relevant + 1))
      at_most = at_or_below[:num_relevant]
      hits = np.searchsorted(relevant, relevant, 'right')  # Relevant items with distance <= t_j.
      precision = hits / at_most
      result.ap[query] = precision.mean()
      if len(cutoffs):
        # Items equal to a relevant distance all have the position of its first copy.
        equal = row == relevant[np.minimum(position, num_relevant - 1)]
        first = np.searchsorted(relevant, relevant, 'left')
        below = (at_or_below[first] -
                 np.bincount(position[equal], minlength=num_relevant)[first])
        # Chance that relevant item j is within the first k results, its tie group in random
        # order.
        inside = np.clip((cutoffs[None, :] - below[:, None]) / (at_most - below)[:, None],
                         0.0, 1.0)
        expected_hits = inside.sum(axis=0)
        result.precision_at_k[query] = expected_hits / cutoffs
        result.recall_at_k[query] = expected_hits / num_relevant
      # Interpolated precision at recall r: the best precision at recall >= r.
      best_after = np.maximum.accumulate(precision[::-1])[::-1]
      result.pr_curve[query] = best_after[np.searchsorted(hits * 10, levels * num_relevant)]
    del keys  # Before the next chunk's product is allocated.
    if progress:
      progress(stop, n)
  return result


def average_precisions(embeddings: np.ndarray, labels: np.ndarray,
                       chunk_size: Optional[int] = None, metric: str = 'l2') -> np.ndarray:
  """Average precision of each item as a query; NaN where no other item shares its label."""
  return evaluate(embeddings, labels, metric=metric, ks=(), num_neighbors=0,
                  chunk_size=chunk_size).ap


def mean_average_precision(embeddings: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
  """mAP over the queries that have at least one relevant item, and how many were skipped."""
  ap = average_precisions(embeddings, labels)
  valid = ~np.isnan(ap)
  return {'map': float(ap[valid].mean()) if valid.any() else float('nan'),
          'queries': int(valid.sum()), 'queries_without_relevant': int((~valid).sum())}


def expected_random_ap(num_relevant: int, num_results: int) -> float:
  """Exact E[AP] of a uniformly random ranking of `num_results` items, `num_relevant` relevant.

  A relevant item at rank p has on average (p - 1)(R - 1)/(M - 1) relevant items above it,
  so E[AP] = (1/M) sum_p (1 + (p - 1)(R - 1)/(M - 1)) / p = (H_M + (R-1)/(M-1) (M - H_M)) / M.
  """
  r, m = int(num_relevant), int(num_results)
  if r <= 0 or m <= 0 or r > m:
    raise ValueError(f'need 0 < relevant ({r}) <= results ({m})')
  if m == 1:
    return 1.0
  harmonic = float(np.sum(1.0 / np.arange(1, m + 1)))
  return (harmonic + (r - 1) / (m - 1) * (m - harmonic)) / m


def random_ranking_map(labels: np.ndarray) -> Dict[str, Optional[float]]:
  """Exact expected mAP of random rankings, and the (n_c - 1)/(N - 1) approximation."""
  labels = np.asarray(labels)
  n = len(labels)
  _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
  relevant = counts[inverse.reshape(-1)] - 1
  scored = relevant > 0
  if not scored.any():
    return {'random_map': None, 'random_map_approx': None}
  exact = {r: expected_random_ap(r, n - 1) for r in set(relevant[scored].tolist())}
  return {'random_map': float(np.mean([exact[r] for r in relevant[scored]])),
          'random_map_approx': float(np.mean(relevant[scored] / (n - 1)))}


def _mean_or_none(values: np.ndarray) -> Optional[float]:
  values = values[~np.isnan(values)] if values.ndim == 1 else values
  return float(values.mean()) if len(values) else None


def summarize(result: RetrievalResult, labels: np.ndarray,
              categories: Iterable[str]) -> Dict:
  """The `retrieval.<distance>` section of metrics.json (docs/metrics.md)."""
  labels = np.asarray(labels)
  scored = result.scored
  per_category = {}
  for category in categories:
    values = result.ap[(labels == category) & scored]
    per_category[category] = float(values.mean()) if len(values) else None
  def at_k(values):
    return {str(k): (float(values[scored, i].mean()) if scored.any() else None)
            for i, k in enumerate(result.ks)}
  curve = result.pr_curve[scored].mean(axis=0) if scored.any() else [None] * len(RECALL_LEVELS)
  return {
      'distance': result.metric,
      'extra': result.metric != 'l2',
      'map': _mean_or_none(result.ap),
      'per_category_ap': per_category,
      'precision_at_k': at_k(result.precision_at_k),
      'recall_at_k': at_k(result.recall_at_k),
      'pr_curve_11pt': {'recall': list(RECALL_LEVELS),
                        'precision': [None if p is None else float(p) for p in curve]},
      'queries': int(scored.sum()),
      'queries_without_relevant': int((~scored).sum()),
  }


class ProgressLogger:
  """`progress` callback for evaluate(): queries done, shown by common/progress.py."""

  def __init__(self, what: str, interval: float = 10.0):
    self._what, self._interval = what, interval
    self._shown = None

  def __call__(self, done: int, total: int) -> None:
    if self._shown is None:
      self._shown = progress_lib.Progress(total, self._what, 'queries', log_every=self._interval)
    self._shown.update(done - self._shown.count)
    if done == total:
      self._shown.close()


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
