"""Benchmark: exact leave-one-out retrieval metrics, chunked (domain/retrieval.py) vs NumPy.

  .venv/bin/python -m benchmarks.retrieval compare --n 5000 --repeats 3
  .venv/bin/python -m benchmarks.retrieval scale --n 1000 2000 5000 10000 20000 50000

`compare` times, in one process and alternating, the straightforward NumPy version (the full
N x N distance matrix from one matrix product, a full argsort of every row, AP with ties as
scikit-learn treats them, all vectorised), the project's previous version (scipy cdist, an
argsort per query) and `retrieval.evaluate` (AP only, and all metrics: AP, precision/recall@k,
PR curve, 10 neighbours), checks that the APs agree (to 1e-15: the order of a final sum), and
prints medians. `scale` runs `retrieval.evaluate` (all metrics, L2) once per N, each in a
fresh child process, and reports wall time and peak memory (the child's peak RSS, and
tracemalloc's peak of the allocations made during the evaluation).

Data: N x 1024 float32 "embeddings" with the full profile's shape of labels (100 categories,
N/100 drawings each): a Gaussian centre per category plus Gaussian noise, through a ReLU like
fc_1 (noise 2.5x the centres' scale: mAP about 0.4, like the trained models).
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from scipy.spatial import distance

from domain import retrieval

DIM = 1024
CATEGORIES = 100


def synthetic(n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % CATEGORIES
  centres = rng.normal(size=(CATEGORIES, DIM)).astype(np.float32)
  embeddings = centres[labels] + 2.5 * rng.normal(size=(n, DIM)).astype(np.float32)
  return np.maximum(embeddings, 0.0), labels


def numpy_average_precisions(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Full distance matrix, full argsort; ties as one rank step (scikit-learn's convention)."""
  vectors = embeddings.astype(np.float64)
  squared = np.einsum('ij,ij->i', vectors, vectors)
  distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * (vectors @ vectors.T), 0.0)
  np.fill_diagonal(distances, np.inf)  # The query itself sorts last and is not relevant.
  order = np.argsort(distances, axis=1)
  sorted_distances = np.take_along_axis(distances, order, axis=1)
  relevant = labels[order] == labels[:, None]
  relevant[:, -1] = False
  hits = np.cumsum(relevant, axis=1)
  n = len(labels)
  # Precision is read at the last position of each group of equal distances.
  is_end = np.ones_like(relevant)
  is_end[:, :-1] = sorted_distances[:, 1:] != sorted_distances[:, :-1]
  group_end = np.where(is_end, np.arange(n)[None, :], n)
  group_end = np.minimum.accumulate(group_end[:, ::-1], axis=1)[:, ::-1]
  precision_at_end = np.take_along_axis(hits, group_end, axis=1) / (group_end + 1)
  total = relevant.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(total > 0, (relevant * precision_at_end).sum(axis=1) / total, np.nan)


def previous_average_precisions(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """The project's first version (before issue 5): scipy cdist per 1024 queries, then one
  argsort and the tie-aware AP per query in a Python loop."""
  vectors = embeddings.astype(np.float64)
  n = len(labels)
  result = np.full(n, np.nan)
  for start in range(0, n, 1024):
    block = distance.cdist(vectors[start:start + 1024], vectors, 'euclidean')
    for offset, distances in enumerate(block):
      others = np.arange(n) != start + offset
      d, relevant = distances[others], labels[others] == labels[start + offset]
      if not relevant.any():
        continue
      order = np.argsort(d, kind='stable')
      d, relevant = d[order], relevant[order]
      ends = np.flatnonzero(np.append(d[1:] != d[:-1], True))
      hits = np.cumsum(relevant)[ends]
      result[start + offset] = np.sum(np.diff(np.concatenate(([0], hits))) * hits /
                                      (ends + 1)) / relevant.sum()
  return result


def _timed(function, *args, **kwargs):
  start = time.perf_counter()
  value = function(*args, **kwargs)
  return time.perf_counter() - start, value


def compare(n: int, repeats: int) -> dict:
  embeddings, labels = synthetic(n)
  times = {'numpy_full_sort': [], 'previous_version': [], 'chunked_ap_only': [],
           'chunked_all_metrics': []}
  for repeat in range(repeats):
    seconds, reference = _timed(numpy_average_precisions, embeddings, labels)
    times['numpy_full_sort'].append(seconds)
    seconds, previous = _timed(previous_average_precisions, embeddings, labels)
    times['previous_version'].append(seconds)
    seconds, ap_only = _timed(retrieval.average_precisions, embeddings, labels)
    times['chunked_ap_only'].append(seconds)
    seconds, full = _timed(retrieval.evaluate, embeddings, labels)
    times['chunked_all_metrics'].append(seconds)
    # Equal up to the order of the final sum (a mean vs. a sum over a total).
    max_difference = float(max(np.nanmax(np.abs(reference - ap_only)),
                               np.nanmax(np.abs(reference - full.ap)),
                               np.nanmax(np.abs(reference - previous))))
    same_queries = bool(np.array_equal(np.isnan(reference), np.isnan(full.ap)))
    print(f'repeat {repeat + 1}/{repeats}: ' + ', '.join(
        f'{k} {v[-1]:.2f} s' for k, v in times.items()) +
          f'; max |AP difference| {max_difference:.1e}', flush=True)
  medians = {k: statistics.median(v) for k, v in times.items()}
  return {'n': n, 'dim': DIM, 'repeats': repeats, 'median_seconds': medians,
          'speedup_ap_only': medians['numpy_full_sort'] / medians['chunked_ap_only'],
          'speedup_all_metrics': medians['numpy_full_sort'] / medians['chunked_all_metrics'],
          'speedup_ap_only_vs_previous': medians['previous_version'] / medians['chunked_ap_only'],
          'map': float(np.nanmean(full.ap)), 'max_ap_difference': max_difference,
          'same_queries': same_queries}


def _scale_child(n: int) -> dict:
  embeddings, labels = synthetic(n)
  tracemalloc.start()
  seconds, result = _timed(retrieval.evaluate, embeddings, labels,
                           progress=retrieval.ProgressLogger(f'N={n}', interval=60))
  traced_peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  return {'n': n, 'seconds': seconds, 'map': float(np.nanmean(result.ap)),
          'tracemalloc_peak_mib': traced_peak / 2**20,
          'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          'input_mib': embeddings.nbytes / 2**20}


def scale(sizes) -> list:
  rows = []
  for n in sizes:
    output = subprocess.run([sys.executable, '-m', 'benchmarks.retrieval', '_child', str(n)],
                            check=True, capture_output=True, text=True).stdout
    row = json.loads(output.strip().splitlines()[-1])
    rows.append(row)
    print(f"N={row['n']:>6}: {row['seconds']:8.2f} s, peak RSS {row['peak_rss_mib']:7.0f} MiB, "
          f"tracemalloc peak {row['tracemalloc_peak_mib']:7.0f} MiB "
          f"(input {row['input_mib']:.0f} MiB), mAP {row['map']:.4f}", flush=True)
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  commands = parser.add_subparsers(dest='command', required=True)
  compare_parser = commands.add_parser('compare')
  compare_parser.add_argument('--n', type=int, default=5000)
  compare_parser.add_argument('--repeats', type=int, default=3)
  scale_parser = commands.add_parser('scale')
  scale_parser.add_argument('--n', type=int, nargs='+', default=[1000, 2000, 5000, 10000])
  child = commands.add_parser('_child')
  child.add_argument('n', type=int)
  args = parser.parse_args(argv)
  if args.command == 'compare':
    print(json.dumps(compare(args.n, args.repeats), indent=2))
  elif args.command == 'scale':
    print(json.dumps(scale(args.n), indent=2))
  else:
    print(json.dumps(_scale_child(args.n)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
