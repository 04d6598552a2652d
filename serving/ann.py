"""An approximate nearest-neighbour index (FAISS HNSW) for galleries too large to scan.

Same contract as `domain.retrieval.nearest` (indices and L2 distances, nearest first), so
the Searcher can use either. Exact search stays the default: benchmarks/README.md ("Search")
has recall@10 and queries/s of both, measured side by side.
"""
from typing import Tuple

import numpy as np

INDEX_KINDS = ('exact', 'hnsw')


class HnswIndex:
  """FAISS's HNSW graph over float32 vectors. `m` links per node, `ef_search` candidates kept
  while searching: larger is slower and closer to exact."""

  def __init__(self, vectors: np.ndarray, m: int = 32, ef_construction: int = 80,
               ef_search: int = 64):
    try:
      import faiss  # pylint: disable=g-import-not-at-top  # Optional: only this index needs it.
    except ImportError as e:
      raise ImportError('the hnsw index needs faiss: pip install -c constraints.txt '
                        "'quickdraw-tfx[ann]' (or use the exact index)") from e
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    self._index = faiss.IndexHNSWFlat(vectors.shape[1], m)
    self._index.hnsw.efConstruction = ef_construction
    self._index.hnsw.efSearch = ef_search
    self._index.add(vectors)
    self.size = len(vectors)

  def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    k = min(k, self.size)
    squared, indices = self._index.search(
        np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), k)
    # FAISS reports squared L2; rounding can make a self-match slightly negative.
    return indices.astype(np.int64), np.sqrt(np.maximum(squared, 0.0)).astype(np.float64)
