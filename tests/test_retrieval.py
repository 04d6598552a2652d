"""Retrieval metrics against an independent per-query computation with scikit-learn."""
import itertools

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import precision_recall_curve
from sklearn.metrics import precision_score
from sklearn.metrics.pairwise import cosine_similarity

from domain import retrieval

KS = retrieval.K_VALUES


def _reference(embeddings, labels, metric='l2', ks=KS):
  """Per query, from directly computed float64 distances, scikit-learn's scores.

  AP: average_precision_score(relevant, -distance). Precision@k: precision_score with each
  item weighted by its chance of being in the first k' results when its tie group is in
  random order (k' = min(k, N - 1)). PR: precision_recall_curve without its final (0, 1)
  point, interpolated. NaN rows for queries without a relevant item.
  """
  n = len(labels)
  if metric == 'l2':
    distances = np.sqrt(((embeddings[:, None, :] - embeddings[None, :, :]) ** 2).sum(axis=-1))
  else:
    distances = 1.0 - cosine_similarity(embeddings)
  ap = np.full(n, np.nan)
  precision_at_k = np.full((n, len(ks)), np.nan)
  recall_at_k = np.full((n, len(ks)), np.nan)
  curve = np.full((n, 11), np.nan)
  for q in range(n):
    keep = np.arange(n) != q
    relevant = labels[keep] == labels[q]
    if not relevant.any():
      continue
    d = distances[q, keep]
    ap[q] = average_precision_score(relevant, -d)
    below = (d[None, :] < d[:, None]).sum(axis=1)
    group = (d[None, :] == d[:, None]).sum(axis=1)
    for i, k in enumerate(ks):
      cutoff = min(k, n - 1)
      weight = np.clip((cutoff - below) / group, 0.0, 1.0)
      precision_at_k[q, i] = precision_score(relevant, np.ones_like(relevant),
                                             sample_weight=weight)
      recall_at_k[q, i] = (weight * relevant).sum() / relevant.sum()
    precision, recall, _ = precision_recall_curve(relevant, -d)
    precision, recall = precision[:-1], recall[:-1]
    curve[q] = [precision[recall >= level].max() for level in retrieval.RECALL_LEVELS]
  return ap, precision_at_k, recall_at_k, curve


def _assert_matches_reference(embeddings, labels, metric='l2', **kwargs):
  result = retrieval.evaluate(embeddings, labels, metric=metric, **kwargs)
  ap, precision_at_k, recall_at_k, curve = _reference(embeddings, labels, metric)
  np.testing.assert_allclose(result.ap, ap, rtol=0, atol=1e-9)
  np.testing.assert_allclose(result.precision_at_k, precision_at_k, rtol=0, atol=1e-9)
  np.testing.assert_allclose(result.recall_at_k, recall_at_k, rtol=0, atol=1e-9)
  np.testing.assert_allclose(result.pr_curve, curve, rtol=0, atol=1e-9)
  return result


@pytest.mark.parametrize('metric', retrieval.METRICS)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_random_embeddings_match_sklearn(seed, metric):
  rng = np.random.default_rng(seed)
  embeddings = rng.normal(size=(150, 16))
  labels = rng.integers(0, 6, size=150)
  result = _assert_matches_reference(embeddings, labels, metric)
  assert result.scored.all()


@pytest.mark.parametrize('metric', retrieval.METRICS)
def test_ties_and_duplicate_rows_match_sklearn(metric):
  rng = np.random.default_rng(7)
  # Points on a small integer grid: many exactly equal distances.
  embeddings = rng.integers(0, 3, size=(120, 2)).astype(np.float64)
  embeddings[60:80] = embeddings[0:20]  # Duplicate rows.
  labels = rng.integers(0, 4, size=120)
  _assert_matches_reference(embeddings, labels, metric, chunk_size=17)


def test_duplicated_random_embeddings_tie_exactly():
  # Real-valued duplicates: equal distances must not depend on matrix-product rounding.
  rng = np.random.default_rng(11)
  base = rng.normal(size=(40, 64)).astype(np.float32)
  embeddings = np.concatenate([base, base[:15], base[:5]])
  labels = np.concatenate([rng.integers(0, 4, size=40), rng.integers(0, 4, size=20)])
  _assert_matches_reference(embeddings.astype(np.float64), labels)


def test_single_drawing_categories_are_not_queries_but_still_results():
  rng = np.random.default_rng(5)
  embeddings = rng.normal(size=(60, 8))
  labels = np.array(['a'] * 25 + ['b'] * 33 + ['lonely', 'alone'])
  result = _assert_matches_reference(embeddings, labels)
  assert np.isnan(result.ap[-2:]).all() and result.scored[:-2].all()
  summary = retrieval.summarize(result, labels, ['a', 'b', 'lonely', 'alone', 'absent'])
  assert summary['queries'] == 58 and summary['queries_without_relevant'] == 2
  assert summary['per_category_ap']['lonely'] is None
  assert summary['per_category_ap']['absent'] is None
  assert summary['map'] == pytest.approx(np.nanmean(result.ap), abs=1e-12)
  # The lonely drawings still push relevant items down for the other queries.
  without = retrieval.evaluate(embeddings[:-2], labels[:-2])
  assert not np.allclose(without.ap, result.ap[:-2])


def test_no_query_at_all_gives_null_map():
  result = retrieval.evaluate(np.eye(3), np.array(['a', 'b', 'c']))
  summary = retrieval.summarize(result, np.array(['a', 'b', 'c']), ['a', 'b', 'c'])
  assert summary['map'] is None and summary['queries'] == 0
  assert summary['precision_at_k']['1'] is None
  assert summary['pr_curve_11pt']['precision'] == [None] * 11


def test_zero_embeddings_under_cosine_match_sklearn():
  rng = np.random.default_rng(9)
  embeddings = np.maximum(rng.normal(size=(50, 4)), 0.0)  # ReLU: some rows become 0.
  embeddings[:6] = 0.0
  labels = rng.integers(0, 3, size=50)
  _assert_matches_reference(embeddings, labels, 'cosine')


@pytest.mark.parametrize('grid', [False, True])
def test_results_do_not_depend_on_the_order_of_the_test_set(grid):
  rng = np.random.default_rng(4)
  if grid:
    embeddings = rng.integers(0, 3, size=(90, 3)).astype(np.float64)
  else:
    embeddings = rng.normal(size=(90, 12))
  labels = rng.integers(0, 5, size=90)
  ids = np.array([f'drawing-{i:03d}' for i in range(90)])
  result = retrieval.evaluate(embeddings, labels, ids=ids)
  order = rng.permutation(90)
  permuted = retrieval.evaluate(embeddings[order], labels[order], ids=ids[order])
  for key in ('ap', 'precision_at_k', 'recall_at_k', 'pr_curve', 'neighbor_distances'):
    np.testing.assert_array_equal(getattr(permuted, key), getattr(result, key)[order], key)
  # Neighbours as drawing ids: the same lists, equal distances ordered by id.
  np.testing.assert_array_equal(ids[order][permuted.neighbors], ids[result.neighbors][order])


def test_chunked_and_unchunked_results_are_identical():
  rng = np.random.default_rng(3)
  embeddings, labels = rng.normal(size=(200, 32)), rng.integers(0, 7, size=200)
  whole = retrieval.evaluate(embeddings, labels, chunk_size=200)
  for chunk_size in (1, 7, 64):
    chunked = retrieval.evaluate(embeddings, labels, chunk_size=chunk_size)
    for key in ('ap', 'precision_at_k', 'recall_at_k', 'pr_curve', 'neighbors',
                'neighbor_distances'):
      np.testing.assert_array_equal(getattr(chunked, key), getattr(whole, key), key)


def test_neighbors_are_the_nearest_others_with_ties_by_id():
  embeddings = np.array([[0.0], [1.0], [-1.0], [1.0], [5.0]])
  labels = np.array([0, 0, 1, 1, 1])
  ids = np.array(['e', 'd', 'c', 'b', 'a'])
  result = retrieval.evaluate(embeddings, labels, ids=ids, num_neighbors=10)
  # From 0.0: rows 1, 2, 3 all at distance 1, ordered by id (b=3, c=2, d=1); then row 4.
  assert result.neighbors[0].tolist() == [3, 2, 1, 4] + [-1] * 6
  np.testing.assert_allclose(result.neighbor_distances[0, :4], [1, 1, 1, 5])
  assert np.isinf(result.neighbor_distances[0, 4:]).all()
  # Row 1's duplicate (row 3) is at distance exactly 0.
  assert result.neighbors[1, 0] == 3 and result.neighbor_distances[1, 0] == 0.0


def test_random_data_neighbors_match_a_full_sort():
  rng = np.random.default_rng(8)
  embeddings = rng.normal(size=(80, 5))
  result = retrieval.evaluate(embeddings, rng.integers(0, 3, size=80), chunk_size=9)
  distances = np.sqrt(((embeddings[:, None] - embeddings[None]) ** 2).sum(-1))
  np.fill_diagonal(distances, np.inf)
  np.testing.assert_array_equal(result.neighbors, np.argsort(distances, axis=1)[:, :10])
  np.testing.assert_allclose(result.neighbor_distances, np.sort(distances, axis=1)[:, :10],
                             rtol=1e-9)


def test_known_values():
  embeddings = np.array([[0.0], [1.0], [2.0], [10.0]])
  labels = np.array([0, 1, 0, 2])
  ap = retrieval.average_precisions(embeddings, labels)
  # Query 0: ranks 1 (wrong), 2 (right) -> AP 1/2. Query 2: ranks 1 (wrong), 0 (right) -> 1/2.
  assert ap[0] == pytest.approx(0.5) and ap[2] == pytest.approx(0.5)
  assert np.isnan(ap[1]) and np.isnan(ap[3])
  result = retrieval.mean_average_precision(embeddings, labels)
  assert result == {'map': pytest.approx(0.5), 'queries': 2, 'queries_without_relevant': 2}


def test_query_is_excluded_by_index_not_by_distance():
  # Two identical drawings of one category: each must find the other at distance 0.
  embeddings = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
  labels = np.array(['cat', 'cat', 'dog', 'dog'])
  assert retrieval.average_precisions(embeddings, labels).tolist() == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize('relevant,results', [(1, 1), (1, 6), (3, 7), (7, 7), (2, 9)])
def test_expected_random_ap_is_the_mean_over_all_rankings(relevant, results):
  aps = []
  for positions in itertools.combinations(range(results), relevant):
    truth = np.zeros(results, dtype=bool)
    truth[list(positions)] = True
    aps.append(average_precision_score(truth, -np.arange(results)) if results > 1 else 1.0)
  assert retrieval.expected_random_ap(relevant, results) == pytest.approx(np.mean(aps), abs=1e-12)


def test_random_ranking_map_floor():
  labels = np.array(['a'] * 4 + ['b'] * 6 + ['c'])
  floors = retrieval.random_ranking_map(labels)
  exact = (4 * retrieval.expected_random_ap(3, 10) + 6 * retrieval.expected_random_ap(5, 10)) / 10
  assert floors['random_map'] == pytest.approx(exact)
  assert floors['random_map_approx'] == pytest.approx((4 * 3 / 10 + 6 * 5 / 10) / 10)
  assert retrieval.random_ranking_map(np.array(['a', 'b'])) == {
      'random_map': None, 'random_map_approx': None}


def test_bad_input_is_refused_with_a_clear_message():
  with pytest.raises(ValueError, match='do not match'):
    retrieval.average_precisions(np.zeros((3, 2)), np.zeros(4))
  with pytest.raises(ValueError, match='unknown distance'):
    retrieval.evaluate(np.zeros((3, 2)), np.zeros(3), metric='manhattan')
