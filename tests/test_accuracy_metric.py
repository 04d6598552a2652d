"""TopKAccuracy, the TFMA metric: Keras' accuracy values, whatever the batching and merging."""
import numpy as np
import pytest
import tf_keras as keras
from tensorflow_model_analysis.metrics import metric_types

from components.evaluator import accuracy_metric
from tests import beam_combiners


def _data(n=2500, classes=20, seed=0):
  # More rows than one buffer holds, so ranking happens in add_input, merge and extract.
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, size=n)
  logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[labels]
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  return labels, probabilities.astype(np.float32)


def _inputs(labels, probabilities, order):
  return [metric_types.StandardMetricInputs({
      'labels': np.array([labels[i]]),
      'predictions': {'probabilities': probabilities[i], 'embedding': np.zeros(3)},
  }) for i in order]


@pytest.mark.parametrize('k', [1, 5])
def test_equals_keras_in_any_order_and_split(k):
  labels, probabilities = _data()
  keras_metric = (keras.metrics.SparseCategoricalAccuracy() if k == 1
                  else keras.metrics.SparseTopKCategoricalAccuracy(k=k))
  keras_metric.update_state(labels, probabilities)
  expected = float(keras_metric.result().numpy())
  assert 0.2 < expected < 0.95  # Neither trivial nor perfect: the test can tell them apart.
  (computation,) = accuracy_metric.TopKAccuracy(k=k, name='acc').computations(
      output_names=['probabilities'])
  key = computation.keys[0]
  assert key.name == 'acc' and key.output_name == 'probabilities'
  rng = np.random.default_rng(1)
  for parts, order in ((1, np.arange(len(labels))), (3, rng.permutation(len(labels))),
                       (7, rng.permutation(len(labels)))):
    value = beam_combiners.combine(computation.combiner, _inputs(labels, probabilities, order),
                                   parts, compact=parts > 2)[key]
    assert value == pytest.approx(expected, abs=1e-6)  # Keras counts in float32.


def test_a_label_outside_the_vocabulary_is_a_miss_and_no_examples_give_nan():
  probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], np.float32)
  for k in (1, 5):
    (computation,) = accuracy_metric.TopKAccuracy(k=k).computations(
        output_names=['probabilities'])
    key = computation.keys[0]
    inputs = _inputs(np.array([-1, 1]), probabilities, [0, 1])
    assert beam_combiners.combine(computation.combiner, inputs, 1)[key] == 0.5
    assert np.isnan(beam_combiners.combine(computation.combiner, [], 1)[key])
  assert accuracy_metric.TopKAccuracy(k=5).computations()[0].keys[0].name == 'top5_accuracy'


def test_the_whole_prediction_dict_is_refused_with_a_hint():
  (computation,) = accuracy_metric.TopKAccuracy().computations()
  combiner = computation.combiner
  with pytest.raises(ValueError, match='output_names'):
    combiner.add_input(combiner.create_accumulator(),
                       _inputs(np.array([0]), np.ones((1, 3), np.float32), [0])[0])
