"""RetrievalMap: the leave-one-out retrieval mAP of an embedding, as a TFMA metric.

Every drawing of the slice queries all the others by L2 distance (domain/retrieval.py,
exact and chunked); a result is relevant when it has the query's category name, and the
metric is the mean AP over queries with at least one relevant result. TFMA hands the combiner
one example at a time, so it gathers the whole slice (embedding, category and id: 4 KB per
drawing at 1024-d) and ranks in extract_output. Ids order equal distances, so the value does
not depend on the order Beam delivers the examples in.

Use it in an EvalConfig as
  MetricConfig(class_name='RetrievalMap', module='components.evaluator.retrieval_metric')
in a MetricsSpec with output_names=['embedding'] (the model output holding the embedding).
"""
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

from domain import retrieval
from models import features

RETRIEVAL_MAP_NAME = 'retrieval_map'


class RetrievalMap(metric_types.Metric):
  """Leave-one-out mean average precision of L2 retrieval over the slice's examples."""

  def __init__(self, name: str = RETRIEVAL_MAP_NAME, id_key: str = features.ID_KEY,
               category_key: str = features.CATEGORY_KEY):
    super().__init__(_retrieval_map_computations, name=name, id_key=id_key,
                     category_key=category_key)


metric_types.register_metric(RetrievalMap)


def _retrieval_map_computations(name: str, id_key: str, category_key: str,
                                model_names: Optional[List[str]] = None,
                                output_names: Optional[List[str]] = None,
                                sub_keys=None, example_weighted: bool = False,
                                **unused_kwargs) -> metric_types.MetricComputations:
  del sub_keys  # One value per embedding: there are no classes or top-k to key it by.
  computations = []
  for model_name in model_names or ['']:
    for output_name in output_names or ['']:
      key = metric_types.MetricKey(name, model_name=model_name, output_name=output_name,
                                   example_weighted=example_weighted)
      computations.append(metric_types.MetricComputation(
          keys=[key],
          preprocessors=[metric_types.FeaturePreprocessor(feature_keys=[id_key, category_key])],
          combiner=_RetrievalMapCombineFn(key, id_key, category_key)))
  return computations


class _Accumulator:
  __slots__ = ('embeddings', 'labels', 'ids')  # labels: category names

  def __init__(self):
    self.embeddings: List[np.ndarray] = []
    self.labels: List[str] = []
    self.ids: List[str] = []


def _scalar(value) -> object:
  """The single value of a per-example label or feature (TFMA passes shape (), (1,) or [x])."""
  array = np.asarray(value).reshape(-1)
  if array.size != 1:
    raise ValueError(f'RetrievalMap: expected one value per example, got {array.size}')
  item = array[0]
  return item.decode('utf-8') if isinstance(item, bytes) else item


class _RetrievalMapCombineFn(beam.CombineFn):
  """Gathers (embedding, label, id) of every example; ranks them all in extract_output."""

  def __init__(self, key: metric_types.MetricKey, id_key: str, category_key: str):
    self._key = key
    self._id_key = id_key
    self._category_key = category_key

  def create_accumulator(self) -> _Accumulator:
    return _Accumulator()

  def add_input(self, accumulator: _Accumulator,
                element: metric_types.StandardMetricInputs) -> _Accumulator:
    embedding = element.get_predictions(self._key.model_name, self._key.output_name)
    # Relevance by category name, not label id: categories outside the model's vocabulary
    # all have label -1 and would count as one category.
    label = element.features[self._category_key]
    if isinstance(embedding, dict):
      raise ValueError(f'RetrievalMap: set output_names to the embedding output; the model '
                       f'returns {sorted(embedding) if isinstance(embedding, dict) else "?"}')
    accumulator.embeddings.append(np.asarray(embedding, np.float32).reshape(-1))
    accumulator.labels.append(str(_scalar(label)))
    accumulator.ids.append(str(_scalar(element.features[self._id_key])))
    return accumulator

  def merge_accumulators(self, accumulators) -> _Accumulator:
    merged = _Accumulator()
    for accumulator in accumulators:
      merged.embeddings += accumulator.embeddings
      merged.labels += accumulator.labels
      merged.ids += accumulator.ids
    return merged

  def extract_output(self, accumulator: _Accumulator) -> Dict[metric_types.MetricKey, float]:
    if not accumulator.ids:
      return {self._key: float('nan')}
    ids = np.asarray(accumulator.ids)
    # Rows in id order: ties are ranked by id, not by arrival (see retrieval.evaluate).
    order = np.argsort(ids, kind='stable')
    value = retrieval.mean_average_precision(
        np.stack(accumulator.embeddings)[order], np.asarray(accumulator.labels)[order])['map']
    return {self._key: value}
