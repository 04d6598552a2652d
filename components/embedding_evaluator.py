"""EmbeddingEvaluator: classification and leave-one-out retrieval metrics, and a blessing.

A custom component because TFMA cannot compute a leave-one-out metric over embeddings.
It evaluates the exported SavedModel exactly as a client would: serialized tf.Examples go
through the model's `embed` signature, which applies the transform graph itself.
Outputs and their schema: docs/metrics.md.
"""
import io
import json
import os
import time
from typing import Dict, Iterator, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import path_utils
from tfx.v1.dsl.components import InputArtifact, OutputArtifact, Parameter, component

from components import blessing as blessing_lib
from components import classification_metrics
from components import confidence
from components import retrieval
from models import features
from models import preprocessing
from models import progress

METRICS_FILE = 'metrics.json'
EMBEDDINGS_FILE = 'test_embeddings.npz'
CATEGORIES_FILE = os.path.join('assets.extra', 'categories.txt')
SCHEMA_VERSION = 3  # 3: the *_ci95 intervals.
# Metrics copied onto the evaluation and blessing artifacts, so ML Metadata queries see them.
HEADLINE_METRICS = ('train_accuracy', 'test_accuracy', 'map')
# Also copied onto both artifacts (when defined); the model card keeps to HEADLINE_METRICS.
EXTRA_PROPERTIES = ('train_top5_accuracy', 'test_top5_accuracy', 'map_cosine', 'random_map',
                    'raw_pixels_map')
# 95% bootstrap intervals [low, high] (or null) of headline metrics (components/confidence.py).
INTERVALS = ('train_accuracy_ci95', 'test_accuracy_ci95', 'train_top5_accuracy_ci95',
             'test_top5_accuracy_ci95', 'map_ci95')
PROGRESS_SECONDS = 15.0
TRAIN_SAMPLE_BUFFER = 250_000


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
    # A seeded random sample: the records are grouped by category, so the first `limit`
    # would cover only some categories. The buffer holds the split's serialized records
    # (PNG bytes, ~2 KB each).
    dataset = dataset.shuffle(TRAIN_SAMPLE_BUFFER, seed=0).take(limit)
  return iter(dataset.batch(batch_size))


def _run_split(embed, examples: types.Artifact, split: str, batch_size: int,
               limit: int = 0, pixels_size: int = 0) -> Dict[str, np.ndarray]:
  """The model's outputs and the examples' true categories and ids for one split, batched.

  With `pixels_size` > 0 also the raw images as the Transform makes them (flattened), for
  the raw-pixel retrieval floor.
  """
  keys = (features.CATEGORY_KEY, features.ID_KEY) + (
      (features.IMAGE_KEY,) if pixels_size else ())
  parse_spec = {key: tf.io.FixedLenFeature([], tf.string) for key in keys}
  parts = {'embedding': [], 'predicted': [], 'probabilities': [], 'category': [], 'id': []}
  if pixels_size:
    parts['pixels'] = []
  start = time.time()
  count = 0
  with progress.Progress(limit or None, f'EmbeddingEvaluator: embedding the {split} split',
                         'drawings', log_every=PROGRESS_SECONDS) as shown:
    for serialized in _batches(examples, split, batch_size, limit):
      outputs = embed(examples=serialized)
      parsed = tf.io.parse_example(serialized, parse_spec)
      parts['embedding'].append(outputs['embedding'].numpy())
      parts['probabilities'].append(outputs['probabilities'].numpy())
      parts['predicted'].append(outputs['category'].numpy())
      parts['category'].append(parsed[features.CATEGORY_KEY].numpy())
      parts['id'].append(parsed[features.ID_KEY].numpy())
      if pixels_size:
        images = preprocessing.decode_and_resize(parsed[features.IMAGE_KEY], pixels_size)
        parts['pixels'].append(images.numpy().reshape(len(serialized), -1))
      count += len(serialized)
      shown.update(len(serialized))
  if not count:
    raise ValueError(f'{split} split of {examples.uri}: no examples to evaluate')
  logging.info('EmbeddingEvaluator: %s split done, %d drawings in %.1f s', split, count,
               time.time() - start)
  result = {key: np.concatenate(value) for key, value in parts.items()}
  for key in ('predicted', 'category', 'id'):  # bytes objects -> unicode: saved without pickle.
    result[key] = np.char.decode(result[key].astype(np.bytes_), 'utf-8')
  return result


def read_categories(model_dir: str) -> list:
  """The model's label vocabulary, in label-id order (written by the Trainer)."""
  path = os.path.join(model_dir, CATEGORIES_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: the model has no category list; it should be written by '
                            'models.trainer.run_fn. Re-run the Trainer.')
  with tf.io.gfile.GFile(path) as f:
    return [line.rstrip('\n') for line in f if line.strip()]


def _nan_to_none(value: float) -> Optional[float]:
  return None if value is None or np.isnan(value) else float(value)


def compute_metrics(model_name: str, train: Dict[str, np.ndarray], test: Dict[str, np.ndarray],
                    categories: Sequence[str],
                    chunk_size: Optional[int] = None) -> Tuple[Dict, Dict[str, np.ndarray]]:
  """metrics.json without the blessing, and the per-query arrays (docs/metrics.md)."""
  start = time.time()
  categories = list(categories)
  labels, ids = test['category'], test['id']
  classification = {
      'categories': categories,
      'train': classification_metrics.split_metrics(
          train['category'], train['predicted'], train['probabilities'], categories),
      'test': classification_metrics.split_metrics(
          test['category'], test['predicted'], test['probabilities'], categories),
  }
  # Retrieval needs no vocabulary: test categories the model lacks are reported too.
  retrieval_categories = categories + sorted(set(labels.tolist()) - set(categories))
  per_query = {}
  sections = {}
  for metric in retrieval.METRICS:
    result = retrieval.evaluate(
        test['embedding'], labels, metric=metric, ids=ids, chunk_size=chunk_size,
        progress=retrieval.ProgressLogger(f'EmbeddingEvaluator {model_name}: {metric} retrieval'))
    sections[metric] = retrieval.summarize(result, labels, retrieval_categories)
    per_query[f'ap_{metric}'] = result.ap
    per_query[f'neighbors_{metric}'] = result.neighbors
    per_query[f'neighbor_distances_{metric}'] = result.neighbor_distances
  if 'pixels' in test:
    per_query['ap_raw_pixels'] = retrieval.evaluate(
        test['pixels'], labels, ks=(), num_neighbors=0, chunk_size=chunk_size,
        progress=retrieval.ProgressLogger(f'EmbeddingEvaluator {model_name}: raw pixels')).ap
  else:
    per_query['ap_raw_pixels'] = np.full(len(labels), np.nan)
  raw_pixels_map = (_nan_to_none(np.nanmean(per_query['ap_raw_pixels']))
                    if np.isfinite(per_query['ap_raw_pixels']).any() else None)
  # Per drawing 0/1 (accuracy) and per query AP (mAP): the units the intervals resample.
  train_correct, test_correct = (
      classification_metrics.correct(split['category'], split['predicted'],
                                     split['probabilities'], categories)
      for split in (train, test))

  present, test_counts = np.unique(labels, return_counts=True)
  per_category = dict(zip(present.tolist(), test_counts.tolist()))
  floors = {**retrieval.random_ranking_map(labels), 'raw_pixels_map': raw_pixels_map,
            'raw_pixels_dim': int(test['pixels'].shape[1]) if 'pixels' in test else None,
            'chance_accuracy': 1.0 / len(categories)}
  l2 = sections['l2']
  metrics = {
      'schema_version': SCHEMA_VERSION,
      'model_name': model_name,
      'train_accuracy': classification['train']['top1'],
      'test_accuracy': classification['test']['top1'],
      'train_top5_accuracy': classification['train']['top5'],
      'test_top5_accuracy': classification['test']['top5'],
      'map': l2['map'],
      'map_cosine': sections['cosine']['map'],
      'random_map': floors['random_map'],
      'raw_pixels_map': raw_pixels_map,
      'train_accuracy_ci95': confidence.mean_interval(train_correct['top1']),
      'test_accuracy_ci95': confidence.mean_interval(test_correct['top1']),
      'train_top5_accuracy_ci95': confidence.mean_interval(train_correct['top5']),
      'test_top5_accuracy_ci95': confidence.mean_interval(test_correct['top5']),
      'map_ci95': confidence.mean_interval(per_query['ap_l2']),
      'ci95_method': confidence.method(),
      'train_examples': int(len(train['category'])),
      'test_examples': int(len(labels)),
      'map_queries': l2['queries'],
      'map_queries_without_relevant': l2['queries_without_relevant'],
      'embedding_dim': int(test['embedding'].shape[1]),
      'num_categories': len(categories),
      'chance_accuracy': 1.0 / len(categories),
      'classification': classification,
      'retrieval': {'k': list(retrieval.K_VALUES), **sections},
      'floors': floors,
      'counts': {
          'train_examples': int(len(train['category'])),
          'test_examples': int(len(labels)),
          'test_per_category': {c: int(per_category.get(c, 0)) for c in retrieval_categories},
          'categories_with_single_test_drawing': sorted(
              c for c, n in per_category.items() if n == 1),
          'categories_without_test_drawings': [c for c in categories if c not in per_category],
          'queries': l2['queries'],
          'queries_without_relevant': l2['queries_without_relevant'],
          'duplicate_test_embeddings': retrieval.count_duplicates(test['embedding']),
      },
  }
  logging.info('EmbeddingEvaluator %s: metrics computed in %.1f s', model_name,
               time.time() - start)
  return metrics, per_query


def _set_properties(artifact: types.Artifact, metrics: Dict) -> None:
  for key in HEADLINE_METRICS:  # Always present; NaN when undefined (no query at all).
    value = metrics[key]
    artifact.set_float_custom_property(key, float('nan') if value is None else value)
  for key in EXTRA_PROPERTIES:
    if metrics.get(key) is not None:
      artifact.set_float_custom_property(key, metrics[key])


def _write_npz(uri: str, arrays: Dict[str, np.ndarray]) -> None:
  buffer = io.BytesIO()  # np.savez needs a seekable file; GFile (gs://) is not.
  np.savez_compressed(buffer, **arrays)
  with tf.io.gfile.GFile(os.path.join(uri, EMBEDDINGS_FILE), 'wb') as f:
    f.write(buffer.getvalue())


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
    raw_pixels_size: Parameter[int] = 128,
    not_worse_than_pushed: Parameter[int] = 0,
    registry_dir: Parameter[str] = '',
) -> None:
  """Classification (train, test) and leave-one-out retrieval (test) metrics, and a blessing.

  The model is blessed when test accuracy >= min_test_accuracy and mAP >= min_map, and, when
  `not_worse_than_pushed` is 1, neither is below the newest model card under
  `<registry_dir>/<model_name>/`. `train_eval_max_examples` > 0 measures train metrics on that
  many drawings only. `raw_pixels_size` > 0: the raw-pixel mAP floor at that image size.
  """
  model_dir = path_utils.serving_model_path(model.uri)
  loaded = tf.saved_model.load(model_dir)
  embed = loaded.signatures['embed']
  categories = read_categories(model_dir)
  start = time.time()
  train = _run_split(embed, examples, 'train', batch_size, train_eval_max_examples)
  test = _run_split(embed, examples, 'test', batch_size, pixels_size=raw_pixels_size)
  metrics, per_query = compute_metrics(model_name, train, test, categories)
  metrics['thresholds'] = {'min_test_accuracy': min_test_accuracy, 'min_map': min_map,
                           'not_worse_than_pushed': bool(not_worse_than_pushed)}
  metrics['blessing'] = blessing_lib.decide(
      metrics, min_test_accuracy, min_map, not_worse_than_pushed=bool(not_worse_than_pushed),
      registry_dir=registry_dir, model_name=model_name)
  blessed = metrics['blessing']['blessed']
  metrics['blessed'] = blessed
  metrics['evaluation_seconds'] = round(time.time() - start, 1)
  logging.info('EmbeddingEvaluator %s: %s', model_name, json.dumps(
      {key: metrics[key] for key in HEADLINE_METRICS + EXTRA_PROPERTIES + INTERVALS +
       ('blessed',)}))
  for check in metrics['blessing']['checks']:
    logging.info('EmbeddingEvaluator %s: %s %s (%s)', model_name, check['name'],
                 'passed' if check['passed'] else 'FAILED', check['detail'])

  # TFX's local runner creates output folders; Kubeflow's launcher does not.
  for artifact in (evaluation, embeddings, blessing):
    tf.io.gfile.makedirs(artifact.uri)
  with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), 'w') as f:
    json.dump(metrics, f, indent=2, allow_nan=False)
  _write_npz(embeddings.uri, {
      'embedding': test['embedding'], 'category': test['category'], 'id': test['id'],
      'predicted': test['predicted'], 'probabilities': test['probabilities'],
      'class_names': np.array(categories), **per_query})
  _set_properties(evaluation, metrics)
  _set_properties(blessing, metrics)
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


def load_per_query(artifact_uri: str) -> Dict[str, np.ndarray]:
  """Every array of the embeddings artifact (docs/metrics.md, section 2) by name."""
  with tf.io.gfile.GFile(os.path.join(artifact_uri, EMBEDDINGS_FILE), 'rb') as f:
    with np.load(io.BytesIO(f.read())) as data:
      return {key: data[key] for key in data.files}


def load_embeddings(artifact_uri: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(embedding, category, id) arrays as written by the evaluator."""
  data = load_per_query(artifact_uri)
  return data['embedding'], data['category'], data['id']
