"""EmbeddingEvaluator: accuracy, leave-one-out retrieval mAP over fc_1, and a blessing.

A custom component because TFMA cannot compute a leave-one-out metric over embeddings.
It evaluates the exported SavedModel exactly as a client would: serialized tf.Examples go
through the model's `embed` signature, which applies the transform graph itself.
"""
import io
import json
import os
import time
from typing import Dict, Iterator, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import path_utils
from tfx.v1.dsl.components import InputArtifact, OutputArtifact, Parameter, component

from components import quickdraw_data
from components import retrieval

METRICS_FILE = 'metrics.json'
EMBEDDINGS_FILE = 'test_embeddings.npz'
# Metrics copied onto the evaluation and blessing artifacts, so ML Metadata queries see them.
HEADLINE_METRICS = ('train_accuracy', 'test_accuracy', 'map')


class Embeddings(types.Artifact):
  """fc_1 embeddings of the test split, with each drawing's id and category."""
  # <namespace>.<Name>: the form Kubeflow Pipelines v2 requires of custom artifact types.
  TYPE_NAME = 'quickdraw.Embeddings'


def _batches(examples: types.Artifact, split: str, batch_size: int,
             limit: int) -> Iterator[tf.Tensor]:
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), '*')
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f'{pattern}: no examples for split {split!r}')
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP')
  if limit > 0:
    dataset = dataset.take(limit)
  return iter(dataset.batch(batch_size))


def _run_split(embed, examples: types.Artifact, split: str, batch_size: int,
               limit: int = 0) -> Dict[str, np.ndarray]:
  """The model's outputs and the examples' true categories and ids for one split."""
  parse_spec = {key: tf.io.FixedLenFeature([], tf.string)
                for key in (quickdraw_data.CATEGORY_KEY, quickdraw_data.ID_KEY)}
  parts = {'embedding': [], 'predicted': [], 'probabilities': [], 'category': [], 'id': []}
  start, count = time.time(), 0
  for serialized in _batches(examples, split, batch_size, limit):
    outputs = embed(examples=serialized)
    parsed = tf.io.parse_example(serialized, parse_spec)
    parts['embedding'].append(outputs['embedding'].numpy())
    parts['probabilities'].append(outputs['probabilities'].numpy())
    parts['predicted'].append(outputs['category'].numpy())
    parts['category'].append(parsed[quickdraw_data.CATEGORY_KEY].numpy())
    parts['id'].append(parsed[quickdraw_data.ID_KEY].numpy())
    count += len(serialized)
    if len(parts['id']) % 10 == 0:
      logging.info('EmbeddingEvaluator: %s split, %d drawings, %.1f/s', split, count,
                   count / (time.time() - start))
  result = {key: np.concatenate(value) for key, value in parts.items()}
  for key in ('predicted', 'category', 'id'):  # bytes objects -> unicode: saved without pickle.
    result[key] = np.char.decode(result[key].astype(np.bytes_), 'utf-8')
  return result


def _set_headline(artifact: types.Artifact, metrics: Dict[str, float]) -> None:
  for key in HEADLINE_METRICS:
    artifact.set_float_custom_property(key, metrics[key])


@component
def EmbeddingEvaluator(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
    embeddings: OutputArtifact[Embeddings],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    model_name: Parameter[str],
    min_test_accuracy: Parameter[float] = 0.0,
    min_map: Parameter[float] = 0.0,
    train_eval_max_examples: Parameter[int] = 0,
    batch_size: Parameter[int] = 64,
) -> None:
  """Top-1 accuracy on train and test, test-split leave-one-out mAP (L2 on fc_1), blessing.

  The model is blessed when test accuracy >= min_test_accuracy and mAP >= min_map.
  `train_eval_max_examples` > 0 measures train accuracy on that many drawings only.
  """
  loaded = tf.saved_model.load(path_utils.serving_model_path(model.uri))
  embed = loaded.signatures['embed']
  start = time.time()
  train = _run_split(embed, examples, 'train', batch_size, train_eval_max_examples)
  test = _run_split(embed, examples, 'test', batch_size)
  retrieval_metrics = retrieval.mean_average_precision(test['embedding'], test['category'])
  metrics = {
      'model_name': model_name,
      'train_accuracy': float(np.mean(train['predicted'] == train['category'])),
      'test_accuracy': float(np.mean(test['predicted'] == test['category'])),
      'train_examples': int(len(train['category'])),
      'test_examples': int(len(test['category'])),
      'map': retrieval_metrics['map'],
      'map_queries': retrieval_metrics['queries'],
      'map_queries_without_relevant': retrieval_metrics['queries_without_relevant'],
      'embedding_dim': int(test['embedding'].shape[1]),
      'num_categories': int(test['probabilities'].shape[1]),
      'chance_accuracy': 1.0 / test['probabilities'].shape[1],
      'thresholds': {'min_test_accuracy': min_test_accuracy, 'min_map': min_map},
      'evaluation_seconds': round(time.time() - start, 1),
  }
  blessed = metrics['test_accuracy'] >= min_test_accuracy and metrics['map'] >= min_map
  metrics['blessed'] = bool(blessed)
  logging.info('EmbeddingEvaluator %s: %s', model_name, json.dumps(metrics))

  with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), 'w') as f:
    json.dump(metrics, f, indent=2)
  buffer = io.BytesIO()  # np.savez needs a seekable file; GFile (gs://) is not.
  np.savez_compressed(buffer, embedding=test['embedding'], category=test['category'],
                      id=test['id'], predicted=test['predicted'])
  with tf.io.gfile.GFile(os.path.join(embeddings.uri, EMBEDDINGS_FILE), 'wb') as f:
    f.write(buffer.getvalue())
  _set_headline(evaluation, metrics)
  _set_headline(blessing, metrics)
  # The standard blessing contract that Pusher reads: a `blessed` property and a marker file.
  blessing.set_int_custom_property('blessed', int(blessed))
  blessing.set_string_custom_property('current_model', model.uri)
  blessing.set_int_custom_property('current_model_id', model.id)
  with tf.io.gfile.GFile(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'),
                         'w') as f:
    f.write('')


def read_metrics(evaluation_uri: str) -> Dict:
  """The metrics JSON in an evaluation artifact's folder."""
  with tf.io.gfile.GFile(os.path.join(evaluation_uri, METRICS_FILE)) as f:
    return json.load(f)


def load_embeddings(artifact_uri: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(embedding, category, id) arrays as written by the evaluator."""
  with tf.io.gfile.GFile(os.path.join(artifact_uri, EMBEDDINGS_FILE), 'rb') as f:
    data = np.load(io.BytesIO(f.read()))
  return data['embedding'], data['category'], data['id']
