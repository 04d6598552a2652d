"""Leave-one-out mAP against an independent per-query computation with scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from components import retrieval


def _reference_map(embeddings, labels):
  """Per query: drop the query by index, score = -L2 distance, sklearn's AP; mean of defined APs."""
  aps = []
  for q in range(len(labels)):
    keep = np.arange(len(labels)) != q
    relevant = labels[keep] == labels[q]
    if not relevant.any():
      continue
    distances = np.sqrt(((embeddings[keep] - embeddings[q]) ** 2).sum(axis=1))
    aps.append(average_precision_score(relevant, -distances))
  return float(np.mean(aps)), len(aps)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_map_matches_sklearn_on_random_embeddings(seed):
  rng = np.random.default_rng(seed)
  embeddings = rng.normal(size=(150, 16))
  labels = rng.integers(0, 6, size=150)
  result = retrieval.mean_average_precision(embeddings, labels)
  expected, queries = _reference_map(embeddings, labels)
  assert result['map'] == pytest.approx(expected, abs=1e-9)
  assert result['queries'] == queries


def test_map_matches_sklearn_with_exact_ties_and_duplicate_rows():
  rng = np.random.default_rng(7)
  # Points on a small integer grid: many exactly equal distances.
  embeddings = rng.integers(0, 3, size=(120, 2)).astype(np.float64)
  embeddings[60:80] = embeddings[0:20]  # Duplicate rows.
  labels = rng.integers(0, 4, size=120)
  result = retrieval.mean_average_precision(embeddings, labels)
  expected, _ = _reference_map(embeddings, labels)
  assert result['map'] == pytest.approx(expected, abs=1e-9)


def test_query_is_excluded_by_index_not_by_distance():
  # Two identical drawings of one category: each must find the other at distance 0.
  embeddings = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
  labels = np.array(['cat', 'cat', 'dog', 'dog'])
  assert retrieval.average_precisions(embeddings, labels).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_known_values_and_queries_without_relevant_items():
  embeddings = np.array([[0.0], [1.0], [2.0], [10.0]])
  labels = np.array([0, 1, 0, 2])
  ap = retrieval.average_precisions(embeddings, labels)
  # Query 0: ranks 1 (wrong), 2 (right) -> AP 1/2. Query 2: ranks 1 (wrong), 0 (right) -> 1/2.
  assert ap[0] == pytest.approx(0.5) and ap[2] == pytest.approx(0.5)
  assert np.isnan(ap[1]) and np.isnan(ap[3])
  result = retrieval.mean_average_precision(embeddings, labels)
  assert result == {'map': pytest.approx(0.5), 'queries': 2, 'queries_without_relevant': 2}


def test_chunking_does_not_change_the_result():
  rng = np.random.default_rng(3)
  embeddings, labels = rng.normal(size=(50, 4)), rng.integers(0, 3, size=50)
  np.testing.assert_array_equal(retrieval.average_precisions(embeddings, labels, chunk_size=7),
                                retrieval.average_precisions(embeddings, labels))


def test_mismatched_shapes_are_refused():
  with pytest.raises(ValueError, match='do not match'):
    retrieval.average_precisions(np.zeros((3, 2)), np.zeros(4))
