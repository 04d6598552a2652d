"""TopKAccuracy: top-k accuracy of integer class labels against class probabilities, as a
TFMA metric.

It gives the values of Keras' SparseCategoricalAccuracy (k = 1) and
SparseTopKCategoricalAccuracy, and costs less. TFMA's Keras wrappers run a TensorFlow
metric update for each small batch of drawings, a large share of a TFMA evaluation's time
(measured: benchmarks/README.md, "Evaluation"). This combiner keeps the rows in a buffer and
ranks them with NumPy, many at a time.

How rows are ranked:
- top-1 is the argmax, the first of equal probabilities, as `tf.argmax` and the model's
  `category` output choose;
- for k > 1 a row is a hit when its label is among the k most probable classes, ranked as
  `classification_metrics.top_k_hits` ranks them;
- a label below 0 (a category outside the model's vocabulary) is a miss.

Use it in an EvalConfig as
  MetricConfig(class_name='TopKAccuracy', module='components.evaluator.accuracy_metric',
               config='"k": 5, "name": "top5_accuracy"')
in a MetricsSpec with output_names=['probabilities'].
"""
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

from components.evaluator import classification_metrics

# Rows ranked at once: large enough that NumPy's per-call cost vanishes, small enough
# (100 classes x 4 bytes x 1000) to stay a small buffer.
_BUFFER_ROWS = 1000


class TopKAccuracy(metric_types.Metric):
  """Share of examples whose label is among the k most probable classes."""

  def __init__(self, k: int = 1, name: Optional[str] = None):
    if k < 1:
      raise ValueError(f'TopKAccuracy: k must be at least 1, got {k}')
    super().__init__(_top_k_accuracy_computations, k=k,
                     name=name or ('accuracy' if k == 1 else f'top{k}_accuracy'))


metric_types.register_metric(TopKAccuracy)


def _top_k_accuracy_computations(k: int, name: str,
                                 model_names: Optional[List[str]] = None,
                                 output_names: Optional[List[str]] = None,
                                 sub_keys=None, example_weighted: bool = False,
                                 **unused_kwargs) -> metric_types.MetricComputations:
  del sub_keys  # k is the metric's own setting, not a per-class or top-k sub key.
  if example_weighted:
    raise ValueError('TopKAccuracy counts drawings; the EvalConfig must not weight examples')
  computations = []
  for model_name in model_names or ['']:
    for output_name in output_names or ['']:
      key = metric_types.MetricKey(name, model_name=model_name, output_name=output_name)
      computations.append(metric_types.MetricComputation(
          keys=[key], preprocessors=None, combiner=_TopKAccuracyCombineFn(key, k)))
  return computations


class _Accumulator:
  __slots__ = ('count', 'hits', 'labels', 'rows')

  def __init__(self):
    self.count = 0
    self.hits = 0
    self.labels: List[int] = []  # the buffer of rows not ranked yet
    self.rows: List[np.ndarray] = []


class _TopKAccuracyCombineFn(beam.CombineFn):
  """Buffers (label, probabilities) rows and counts the hits _BUFFER_ROWS rows at a time."""

  def __init__(self, key: metric_types.MetricKey, k: int):
    self._key = key
    self._k = k

  def create_accumulator(self) -> _Accumulator:
    return _Accumulator()

  def _rank(self, accumulator: _Accumulator) -> _Accumulator:
    if accumulator.rows:
      labels = np.asarray(accumulator.labels, np.int64)
      rows = np.stack(accumulator.rows)
      if self._k == 1:
        hits = np.argmax(rows, axis=1) == labels
      else:
        hits = classification_metrics.top_k_hits(labels, rows, self._k)
      accumulator.hits += int(hits.sum())
      accumulator.count += len(labels)
      accumulator.labels, accumulator.rows = [], []
    return accumulator

  def add_input(self, accumulator: _Accumulator,
                element: metric_types.StandardMetricInputs) -> _Accumulator:
    probabilities = element.get_predictions(self._key.model_name, self._key.output_name)
    if isinstance(probabilities, dict):
      raise ValueError(f'TopKAccuracy: set output_names to the probabilities output; the '
                       f'model returns {sorted(probabilities)}')
    label = np.asarray(element.get_labels(self._key.model_name, self._key.output_name))
    if label.size != 1:
      raise ValueError(f'TopKAccuracy: expected one class id per example, got {label.size}')
    accumulator.labels.append(int(label.reshape(-1)[0]))
    accumulator.rows.append(np.asarray(probabilities, np.float32).reshape(-1))
    if len(accumulator.rows) >= _BUFFER_ROWS:
      self._rank(accumulator)
    return accumulator

  def merge_accumulators(self, accumulators) -> _Accumulator:
    merged = _Accumulator()
    for accumulator in accumulators:
      merged.count += accumulator.count
      merged.hits += accumulator.hits
      merged.labels += accumulator.labels
      merged.rows += accumulator.rows
    return self._rank(merged) if len(merged.rows) >= _BUFFER_ROWS else merged

  def compact(self, accumulator: _Accumulator) -> _Accumulator:
    return self._rank(accumulator)  # Counts travel between workers, not buffered rows.

  def extract_output(self, accumulator: _Accumulator) -> Dict[metric_types.MetricKey, float]:
    accumulator = self._rank(accumulator)
    value = accumulator.hits / accumulator.count if accumulator.count else float('nan')
    return {self._key: value}
