"""Exact L2 search vs the HNSW index (serving/ann.py): recall@10 and queries per second.

  .venv/bin/python benchmarks/search.py --sizes 5000 25000 --queries 200 --repeats 3

Galleries are synthetic fc_1-like vectors (1024-d, ReLU of Gaussian clusters, one cluster
per category), because no run here produced a gallery of this size; queries are fresh
draws from the same clusters. Both methods run single-threaded, side by side in each repeat;
the table shows medians.
"""
import argparse
import os
import sys
import time

for variable in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
  os.environ[variable] = '1'  # Before numpy loads: one core each, a fair comparison.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from domain import retrieval  # pylint: disable=g-import-not-at-top
from serving import ann  # pylint: disable=g-import-not-at-top

K = 10


def fc1_like(count: int, centers: np.ndarray, noise_scale: float,
             rng: np.random.Generator) -> np.ndarray:
  labels = rng.integers(len(centers), size=count)
  noise = rng.normal(scale=noise_scale, size=(count, centers.shape[1])).astype(np.float32)
  return np.maximum(centers[labels] + noise, 0.0)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--sizes', type=int, nargs='+', default=[5000, 25000])
  parser.add_argument('--queries', type=int, default=200)
  parser.add_argument('--categories', type=int, default=100)
  parser.add_argument('--dim', type=int, default=1024)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--noise', type=float, default=1.0, help='spread of each cluster, '
                      'relative to the spread of the cluster centres (larger: more overlap)')
  args = parser.parse_args(argv)
  import faiss  # pylint: disable=g-import-not-at-top
  faiss.omp_set_num_threads(1)
  rng = np.random.default_rng(args.seed)
  centers = rng.normal(scale=1.0, size=(args.categories, args.dim)).astype(np.float32)
  queries = fc1_like(args.queries, centers, args.noise, rng)
  rows = []
  for size in args.sizes:
    gallery = fc1_like(size, centers, args.noise, rng)
    start = time.perf_counter()
    index = ann.HnswIndex(gallery)
    build = time.perf_counter() - start
    exact_times, hnsw_times = [], []
    for repeat in range(args.repeats):
      start = time.perf_counter()
      exact, _ = retrieval.nearest(queries, gallery, K)
      exact_times.append(time.perf_counter() - start)
      start = time.perf_counter()
      approximate, _ = index.search(queries, K)
      hnsw_times.append(time.perf_counter() - start)
      print(f'gallery {size}, repeat {repeat + 1}: exact {exact_times[-1]:.3f} s, '
            f'hnsw {hnsw_times[-1]:.3f} s', flush=True)
    recall = np.mean([len(set(a) & set(e)) / K for a, e in zip(approximate, exact)])
    exact_qps = args.queries / np.median(exact_times)
    hnsw_qps = args.queries / np.median(hnsw_times)
    rows.append((size, build, exact_qps, hnsw_qps, recall))
  print(f'\n| gallery | exact queries/s | HNSW queries/s | HNSW / exact | HNSW recall@{K} '
        '| HNSW build s |\n| --- | --- | --- | --- | --- | --- |')
  for size, build, exact_qps, hnsw_qps, recall in rows:
    print(f'| {size:,} | {exact_qps:.0f} | {hnsw_qps:.0f} | {hnsw_qps / exact_qps:.1f}x '
          f'| {recall:.3f} | {build:.1f} |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
