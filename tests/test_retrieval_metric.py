"""RetrievalMap, the TFMA metric: exact leave-one-out mAP whatever order Beam delivers in."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from tensorflow_model_analysis.metrics import metric_types

from components.evaluator import retrieval_metric
from tests import beam_combiners


def _data(n=40, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, size=n)
  embeddings = rng.normal(size=(n, 6)).astype(np.float32) + labels[:, None]
  if n > 9:
    embeddings[5] = embeddings[3]  # Exact duplicates: equal distances to everything.
    embeddings[9] = embeddings[3]
  ids = np.array([f'drawing-{i:03d}' for i in range(n)])
  return embeddings, labels, ids


def _inputs(embeddings, labels, ids, order):
  return [metric_types.StandardMetricInputs({
      'labels': np.array([labels[i]]),
      'predictions': {'embedding': embeddings[i], 'probabilities': np.ones(4) / 4},
      'features': {'drawing_id': np.array([ids[i].encode()]),
                   'category': np.array([f'category {labels[i]}'.encode()])},
  }) for i in order]


def _expected(embeddings, labels):
  """scikit-learn's AP per query over the other drawings, averaged (equal distances tie)."""
  aps = []
  for q in range(len(labels)):
    keep = np.arange(len(labels)) != q
    relevant = labels[keep] == labels[q]
    if relevant.any():
      distances = np.linalg.norm(
          embeddings[keep].astype(np.float64) - embeddings[q].astype(np.float64), axis=1)
      aps.append(average_precision_score(relevant, -distances))
  return float(np.mean(aps))


def test_equals_an_independent_computation_in_any_arrival_order():
  embeddings, labels, ids = _data()
  (computation,) = retrieval_metric.RetrievalMap().computations(output_names=['embedding'])
  key = computation.keys[0]
  assert key.name == 'retrieval_map' and key.output_name == 'embedding'
  expected = _expected(embeddings, labels)
  values = []
  for seed, parts in ((0, 1), (1, 3), (2, 5)):
    order = np.random.default_rng(seed).permutation(len(labels))
    values.append(beam_combiners.combine(
        computation.combiner, _inputs(embeddings, labels, ids, order), parts)[key])
  assert values[0] == pytest.approx(expected, abs=1e-9)
  assert values[1] == values[0] and values[2] == values[0]


def test_a_multi_output_prediction_without_output_names_is_refused():
  embeddings, labels, ids = _data(n=4)
  (computation,) = retrieval_metric.RetrievalMap().computations()
  combiner = computation.combiner
  with pytest.raises(ValueError, match='output_names'):
    combiner.add_input(combiner.create_accumulator(),
                       _inputs(embeddings, labels, ids, [0])[0])


def test_no_query_with_a_relevant_result_gives_nan():
  embeddings, _, ids = _data(n=3)
  (computation,) = retrieval_metric.RetrievalMap().computations(output_names=['embedding'])
  value = beam_combiners.combine(computation.combiner,
                                 _inputs(embeddings, np.array([0, 1, 2]), ids, [0, 1, 2]), 1)
  assert np.isnan(value[computation.keys[0]])
