"""EmbeddingEvaluator: TFMA's evaluation and validation, the retrieval metrics, and a blessing.

TensorFlow Model Analysis evaluates the exported SavedModel (components/tfma_evaluation.py):
top-1/top-5 accuracy on both splits, the confusion matrix, the leave-one-out retrieval mAP as
a TFMA metric (components/retrieval_metric.py), and the validation of value thresholds and,
against the baseline model ML Metadata resolved (the newest blessed model of the same
Trainer), change thresholds. The evaluation artifact is what TFMA writes
(`tfma.load_eval_result(uri)`), plus metrics.json: the report's and the model card's view,
with bootstrap intervals and the retrieval details TFMA has no metric for (per-category AP,
precision/recall@k, PR curve, cosine, floors). Outputs and their schema: docs/metrics.md.
"""
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
from tfx.types import standard_artifacts
from tfx.utils import path_utils
from tfx.v1.dsl.components import (BeamComponentParameter, InputArtifact, OutputArtifact,
                                   Parameter, component)

from components import classification_metrics
from components import confidence
from components import retrieval
from components import tfma_evaluation
from components import tfma_results
from models import features
from models import preprocessing
from models import signatures

METRICS_FILE = 'metrics.json'
EMBEDDINGS_FILE = 'test_embeddings.npz'
CATEGORIES_FILE = os.path.join('assets.extra', 'categories.txt')
SCHEMA_VERSION = 4  # 3: the *_ci95 intervals; 4: TFMA's values, validation and baseline.
# Metrics copied onto the evaluation and blessing artifacts, so ML Metadata queries see them.
HEADLINE_METRICS = ('train_accuracy', 'test_accuracy', 'map')
# Also copied onto both artifacts (when defined); the model card keeps to HEADLINE_METRICS.
EXTRA_PROPERTIES = ('train_top5_accuracy', 'test_top5_accuracy', 'map_cosine', 'random_map',
                    'raw_pixels_map')
# 95% bootstrap intervals [low, high] (or null) of headline metrics (components/confidence.py).
INTERVALS = ('train_accuracy_ci95', 'test_accuracy_ci95', 'train_top5_accuracy_ci95',
             'test_top5_accuracy_ci95', 'map_ci95')
CAPTURE_FOLDER = '_per_drawing'  # Inside the embeddings artifact while the component runs.


class Embeddings(types.Artifact):
  """fc_1 embeddings of the test split, with each drawing's id and category."""
  # <namespace>.<Name>: the form Kubeflow Pipelines v2 requires of custom artifact types.
  TYPE_NAME = 'quickdraw.Embeddings'


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


@component(use_beam=True)
def EmbeddingEvaluator(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
    embeddings: OutputArtifact[Embeddings],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    model_name: Parameter[str],
    baseline_model: InputArtifact[standard_artifacts.Model] = None,
    min_test_accuracy: Parameter[float] = 0.0,
    min_map: Parameter[float] = 0.0,
    max_accuracy_drop: Parameter[float] = -1.0,
    max_map_drop: Parameter[float] = -1.0,
    train_eval_max_examples: Parameter[int] = 0,
    batch_size: Parameter[int] = 64,
    raw_pixels_size: Parameter[int] = 128,
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """TFMA's evaluation of train (top-1/top-5) and test (also confusion, retrieval mAP), the
  retrieval details and intervals, and a blessing from TFMA's validation.

  Blessed when test accuracy >= min_test_accuracy and mAP >= min_map and, when a
  `baseline_model` is given, neither dropped below the baseline's by more than
  max_accuracy_drop / max_map_drop (< 0: no change threshold; 0: not worse). Without a baseline
  the change thresholds are rubber-stamped, as TFX's Evaluator does.
  `train_eval_max_examples` > 0 measures train metrics on that many drawings only (a fixed
  sample). `raw_pixels_size` > 0: the raw-pixel mAP floor at that image size.
  """
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


def output_artifacts(root: str) -> Dict[str, list]:
  """One new, empty artifact per output of the component, in `root/<output name>`: what a
  runner hands the executor, for running it outside a pipeline (tests, benchmarks)."""
  outputs = {}
  for name, channel in EmbeddingEvaluator.SPEC_CLASS.OUTPUTS.items():
    artifact = channel.type()
    artifact.uri = os.path.join(root, name)
    tf.io.gfile.makedirs(artifact.uri)
    outputs[name] = [artifact]
  return outputs


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
