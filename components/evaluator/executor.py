"""The EmbeddingEvaluator's work: TFMA's evaluation of both splits in one Beam pipeline, the
per-drawing outputs captured from it, metrics.json (classification, retrieval, floors and
intervals), the embeddings artifact and the blessing from TFMA's validation."""
import dataclasses
import io
import json
import os
import time
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.evaluator import classification_metrics
from components.evaluator import confidence
from components.evaluator import tfma_evaluation
from components.evaluator import tfma_results
from components.evaluator.outputs import (EMBEDDINGS_FILE, EXTRA_PROPERTIES, HEADLINE_METRICS,
                                          INTERVALS, METRICS_FILE, SCHEMA_VERSION)
from domain import retrieval
from models import features
from models import preprocessing
from models import signatures

CATEGORIES_FILE = os.path.join('assets.extra', 'categories.txt')
CAPTURE_FOLDER = '_per_drawing'  # Inside the embeddings artifact while the component runs.


def _split_pattern(examples: types.Artifact, split: str) -> str:
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), '*')
  if not tf.io.gfile.glob(pattern):
    raise FileNotFoundError(f'{pattern}: no examples for split {split!r}')
  return pattern


def raw_pixels(pattern: str, size: int, batch_size: int = 256) -> Dict[str, np.ndarray]:
  """The test drawings as the Transform makes them (flattened) with their ids: the raw-pixel
  retrieval floor. Decoding only; the model's inference runs once, in TFMA's pipeline."""
  parse_spec = {key: tf.io.FixedLenFeature([], tf.string)
                for key in (features.IMAGE_KEY, features.ID_KEY)}

  def decode(serialized):
    parsed = tf.io.parse_example(serialized, parse_spec)
    images = preprocessing.decode_and_resize(parsed[features.IMAGE_KEY], size)
    return tf.reshape(images, [tf.shape(images)[0], -1]), parsed[features.ID_KEY]

  # A traced, parallel map: decoding batch by batch in eager mode was several times slower.
  dataset = (tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)), compression_type='GZIP')
             .batch(batch_size)
             .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(1))
  pixels, ids = [], []
  for batch_pixels, batch_ids in dataset:
    pixels.append(batch_pixels.numpy())
    ids.append(np.char.decode(batch_ids.numpy().astype(np.bytes_), 'utf-8'))
  ids = np.concatenate(ids)
  order = np.argsort(ids, kind='stable')  # The captured model outputs are in id order too.
  return {'id': ids[order], 'pixels': np.concatenate(pixels)[order]}


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


def _evaluations(examples: types.Artifact, evaluation_uri: str, capture_uri: str,
                 thresholds: tfma_evaluation.Thresholds,
                 train_eval_max_examples: int) -> Dict[str, tfma_evaluation.SplitEvaluation]:
  return {
      'test': tfma_evaluation.SplitEvaluation(
          'test', _split_pattern(examples, 'test'), evaluation_uri,
          os.path.join(capture_uri, 'test'), tfma_evaluation.eval_config(thresholds)),
      'train': tfma_evaluation.SplitEvaluation(
          'train', _split_pattern(examples, 'train'),
          os.path.join(evaluation_uri, tfma_evaluation.TRAIN_SUBDIR),
          os.path.join(capture_uri, 'train'),
          tfma_evaluation.eval_config(None, retrieval=False), limit=train_eval_max_examples),
  }


def _signature_names(model_dir: str) -> set:
  """The SavedModel's signature names, read from saved_model.pb without loading the model."""
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(model_dir, 'saved_model.pb'), 'rb') as f:
    saved_model.ParseFromString(f.read())
  return {name for graph in saved_model.meta_graphs for name in graph.signature_def}


def _drop_or_none(value: float) -> Optional[float]:
  return None if value < 0 else float(value)


def evaluate(examples: types.Artifact, model: types.Artifact, evaluation: types.Artifact,
             embeddings: types.Artifact, blessing: types.Artifact, model_name: str,
             baseline_model: Optional[types.Artifact], min_test_accuracy: float, min_map: float,
             max_accuracy_drop: float, max_map_drop: float, train_eval_max_examples: int,
             batch_size: int, raw_pixels_size: int, beam_pipeline: beam.Pipeline) -> None:
  """The EmbeddingEvaluator's work (its arguments: components/evaluator/component.py)."""
  model_dir = path_utils.serving_model_path(model.uri)
  signature_names = _signature_names(model_dir)
  if signatures.TRANSFORM_FEATURES not in signature_names:
    raise ValueError(f'{model_dir}: the model has no {signatures.TRANSFORM_FEATURES!r} signature '
                     f'(it has {sorted(signature_names)}); it was exported by an older Trainer. '
                     'Re-run the Trainer.')
  baseline_dir = (path_utils.serving_model_path(baseline_model.uri) if baseline_model
                  else None)
  categories = read_categories(model_dir)
  thresholds = tfma_evaluation.Thresholds(
      min_test_accuracy, min_map, _drop_or_none(max_accuracy_drop), _drop_or_none(max_map_drop))
  # TFX's local runner creates output folders; Kubeflow's launcher does not.
  for artifact in (evaluation, embeddings, blessing):
    tf.io.gfile.makedirs(artifact.uri)
  capture_uri = os.path.join(embeddings.uri, CAPTURE_FOLDER)
  evaluations = _evaluations(examples, evaluation.uri, capture_uri, thresholds,
                             train_eval_max_examples)
  start = time.time()
  with beam_pipeline as pipeline:
    tfma_evaluation.add_to_pipeline(pipeline, [evaluations['test'], evaluations['train']],
                                    model_dir, baseline_dir, batch_size, model_name)
  logging.info('EmbeddingEvaluator %s: TFMA evaluation done in %.1f s', model_name,
               time.time() - start)
  test = tfma_evaluation.read_capture(evaluations['test'])
  train = tfma_evaluation.read_capture(evaluations['train'])
  tf.io.gfile.rmtree(capture_uri)
  if raw_pixels_size:
    pixels = raw_pixels(evaluations['test'].file_pattern, raw_pixels_size)
    if not np.array_equal(pixels['id'], test['id']):
      raise ValueError(f'{examples.uri}: the test split read twice gave different drawings')
    test['pixels'] = pixels['pixels']

  metrics, per_query = compute_metrics(model_name, train, test, categories)
  tfma_view = tfma_results.read(evaluation.uri, categories, thresholds)
  tfma_results.merge_into(metrics, tfma_view)
  metrics['thresholds'] = dataclasses.asdict(thresholds)
  metrics['baseline_model'] = baseline_model.uri if baseline_model else None
  metrics['blessing'] = tfma_view['blessing']
  blessed = metrics['blessing']['blessed']
  metrics['blessed'] = blessed
  metrics['evaluation_seconds'] = round(time.time() - start, 1)
  logging.info('EmbeddingEvaluator %s: %s', model_name, json.dumps(
      {key: metrics[key] for key in HEADLINE_METRICS + EXTRA_PROPERTIES + INTERVALS +
       ('blessed',)}))
  for check in metrics['blessing']['checks']:
    logging.info('EmbeddingEvaluator %s: %s %s (%s)', model_name, check['name'],
                 'passed' if check['passed'] else 'FAILED', check['detail'])

  with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), 'w') as f:
    json.dump(metrics, f, indent=2, allow_nan=False)
  _write_npz(embeddings.uri, {
      'embedding': test['embedding'], 'category': test['category'], 'id': test['id'],
      'predicted': test['predicted'], 'probabilities': test['probabilities'],
      'class_names': np.array(categories), **per_query})
  _set_properties(evaluation, metrics)
  _set_properties(blessing, metrics)
  # TFX's blessing contract (as its Evaluator writes it), read by the Pusher and by
  # LatestBlessedModelStrategy: `blessed`, the model's id and uri, the baseline's, a marker file.
  blessing.set_int_custom_property('blessed', int(blessed))
  blessing.set_string_custom_property('current_model', model.uri)
  blessing.set_int_custom_property('current_model_id', model.id)
  if baseline_model:
    blessing.set_string_custom_property('baseline_model', baseline_model.uri)
    blessing.set_int_custom_property('baseline_model_id', baseline_model.id)
  with tf.io.gfile.GFile(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'),
                         'w') as f:
    f.write('')
