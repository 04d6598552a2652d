"""The Evaluator's TensorFlow Model Analysis run: metrics, plots and validation as TFMA writes them.

One Beam pipeline evaluates the exported SavedModel the way a client calls it: serialized
tf.Examples go through its `embed` signature (transform graph inside), and its
`transform_features` signature gives TFMA the label. Two evaluations share the pipeline:
  test   the evaluation artifact's root, read by tfma.load_eval_result(uri): top-1 and top-5
         accuracy, the multi-class confusion matrix, the leave-one-out retrieval mAP
         (retrieval_metric.py) and the validation of the thresholds, against the
         baseline model when there is one;
  train  `<uri>/train`: top-1 and top-5 accuracy of the candidate on a deterministic sample.
Each also hands the per-drawing outputs (ids, labels, probabilities and, for test, the
embeddings) to the component through a file, so inference runs once: the component needs them
for the bootstrap intervals, the paired model comparison and the search gallery.
"""
import dataclasses
import hashlib
import io
import os
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.extractors import unbatch_extractor
from tfx_bsl.tfxio import tf_example_record

from common import progress
from components.evaluator import accuracy_metric
from components.evaluator import retrieval_metric
from models import features
from models import signatures

CANDIDATE = 'candidate'
BASELINE = tfma.BASELINE_KEY
TRAIN_SUBDIR = 'train'
PROBABILITIES, EMBEDDING = 'probabilities', 'embedding'
# Metric names in TFMA's results.
ACCURACY = 'accuracy'
TOP5_ACCURACY = 'top5_accuracy'
CONFUSION_PLOT = 'multi_class_confusion_matrix_plot'
RETRIEVAL_MAP = retrieval_metric.RETRIEVAL_MAP_NAME
EXAMPLE_COUNT = 'example_count'
CAPTURE_FILE = 'per_drawing.npz'
PROGRESS_SECONDS = 15.0


@dataclasses.dataclass(frozen=True)
class Thresholds:
  """Value thresholds on the candidate; change thresholds (None: none) against the baseline."""
  min_test_accuracy: float = 0.0
  min_map: float = 0.0
  # A blessed candidate may be at most this much below the baseline (absolute; 0: not worse).
  max_accuracy_drop: Optional[float] = None
  max_map_drop: Optional[float] = None

  @property
  def has_change_thresholds(self) -> bool:
    return self.max_accuracy_drop is not None or self.max_map_drop is not None


def _threshold(lower_bound: float, max_drop: Optional[float]) -> tfma.MetricThreshold:
  threshold = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': lower_bound}))
  if max_drop is not None:
    threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -max_drop}))
  return threshold


def _accuracy_metrics(thresholds: Optional[Thresholds]) -> List[tfma.MetricConfig]:
  accuracy = tfma.MetricConfig(class_name='TopKAccuracy', module=accuracy_metric.__name__,
                               config=f'"k": 1, "name": "{ACCURACY}"')
  if thresholds is not None:
    accuracy.threshold.CopyFrom(
        _threshold(thresholds.min_test_accuracy, thresholds.max_accuracy_drop))
  return [tfma.MetricConfig(class_name='ExampleCount'), accuracy,
          tfma.MetricConfig(class_name='TopKAccuracy', module=accuracy_metric.__name__,
                            config=f'"k": 5, "name": "{TOP5_ACCURACY}"')]


def eval_config(thresholds: Optional[Thresholds], retrieval: bool = True) -> tfma.EvalConfig:
  """The test evaluation (thresholds given) or the train one (None: accuracy only)."""
  metrics = _accuracy_metrics(thresholds)
  if retrieval:
    metrics.append(tfma.MetricConfig(class_name='MultiClassConfusionMatrixPlot'))
  specs = [tfma.MetricsSpec(metrics=metrics, output_names=[PROBABILITIES])]
  if retrieval:
    retrieval_map = tfma.MetricConfig(class_name='RetrievalMap',
                                      module=retrieval_metric.__name__)
    if thresholds is not None:
      retrieval_map.threshold.CopyFrom(_threshold(thresholds.min_map, thresholds.max_map_drop))
    specs.append(tfma.MetricsSpec(metrics=[retrieval_map], output_names=[EMBEDDING]))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          # Unnamed: TFMA names it 'candidate' when it adds the baseline, '' otherwise.
          signature_name='embed', label_key=features.LABEL,
          # Said, not probed: TFMA's probe rebuilds the Keras model once more per load, and
          # only the signatures are called.
          model_type=tfma.TF_GENERIC,
          preprocessing_function_names=[signatures.TRANSFORM_FEATURES])],
      metrics_specs=specs,
      slicing_specs=[tfma.SlicingSpec()])


@dataclasses.dataclass
class SplitEvaluation:
  """One split's TFMA evaluation: where it is written and what it captures."""
  split: str
  file_pattern: str
  output_path: str
  capture_dir: str
  config: tfma.EvalConfig
  limit: int = 0  # > 0: evaluate a deterministic sample of this many drawings


def _sample_key(record: bytes) -> bytes:
  # A stable hash: the same drawings are sampled on every run and on every Beam runner.
  return hashlib.sha256(record).digest()


@beam.ptransform_fn
def _hash_sample(records, limit: int):
  """The `limit` records with the smallest hashes. Only the hashes meet in one place (to
  find the largest one kept); the records are filtered where they are, so the evaluation
  after the sample stays spread over the workers."""
  keyed = records | 'Hash' >> beam.Map(lambda record: (_sample_key(record), record))
  largest_kept = (keyed
                  | 'Keys' >> beam.Keys()
                  | 'Smallest' >> beam.combiners.Top.Smallest(limit)
                  | 'Largest' >> beam.Map(lambda keys: max(keys) if keys else None))
  return (keyed
          | 'Keep' >> beam.Filter(lambda item, largest: largest is not None and item[0] <= largest,
                                  beam.pvalue.AsSingleton(largest_kept))
          | 'Records' >> beam.Values())


def _first_value(values) -> str:
  value = values[0] if isinstance(values, (list, np.ndarray)) else values
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _candidate(value):
  return value[CANDIDATE] if isinstance(value, dict) and CANDIDATE in value else value


def _per_drawing(extracts: Dict, with_embeddings: bool) -> Dict[str, np.ndarray]:
  """The candidate's outputs in one batch of (batched) extracts."""
  raw = extracts[tfma.FEATURES_KEY]
  predictions = _candidate(extracts[tfma.PREDICTIONS_KEY])
  batch = {
      'id': np.array([_first_value(v) for v in raw[features.ID_KEY]]),
      'category': np.array([_first_value(v) for v in raw[features.CATEGORY_KEY]]),
      'probabilities': np.asarray(predictions[PROBABILITIES], np.float32),
      'predicted': np.array([_first_value([v]) for v in predictions['category']]),
  }
  if with_embeddings:
    batch['embedding'] = np.asarray(predictions[EMBEDDING], np.float32)
  return batch


class _CountDrawings(beam.DoFn):
  """Shows progress as batches pass (a log line every PROGRESS_SECONDS on a worker)."""

  def __init__(self, description: str, total: Optional[int]):
    self._description, self._total = description, total

  def setup(self):
    self._progress = progress.Progress(self._total, self._description, 'drawings',
                                       log_every=PROGRESS_SECONDS)

  def process(self, batch):
    self._progress.update(len(batch['id']))
    yield batch

  def teardown(self):
    self._progress.close()


def _write_capture(batches: List[Dict[str, np.ndarray]], capture_dir: str) -> None:
  # An empty split writes an empty file: read_capture then names the split.
  arrays = ({key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}
            if batches else {})
  buffer = io.BytesIO()  # np.savez needs a seekable file; GFile (gs://) is not.
  np.savez(buffer, **arrays)
  tf.io.gfile.makedirs(capture_dir)
  with tf.io.gfile.GFile(os.path.join(capture_dir, CAPTURE_FILE), 'wb') as f:
    f.write(buffer.getvalue())


def _capture_extractor(evaluation: SplitEvaluation, model_name: str) -> tfma.extractors.Extractor:
  """Passes the batched extracts on unchanged; a branch saves the candidate's outputs."""
  with_embeddings = evaluation.split == 'test'

  @beam.ptransform_fn
  def _capture(extracts):
    _ = (extracts
         | 'PerDrawing' >> beam.Map(_per_drawing, with_embeddings)
         | 'Progress' >> beam.ParDo(_CountDrawings(
             f'EmbeddingEvaluator {model_name}: evaluating the {evaluation.split} split',
             evaluation.limit or None))
         | 'Gather' >> beam.combiners.ToList()
         | 'Write' >> beam.Map(_write_capture, evaluation.capture_dir))
    return extracts

  return tfma.extractors.Extractor(stage_name='CapturePerDrawing', ptransform=_capture())


def _extractors(evaluation: SplitEvaluation, models, model_name: str):
  extractors = tfma.default_extractors(eval_shared_model=models, eval_config=evaluation.config)
  # Before unbatching: the batches are what the model returned, the cheapest form to save.
  position = next(i for i, e in enumerate(extractors)
                  if e.stage_name == unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME)
  return (extractors[:position] + [_capture_extractor(evaluation, model_name)]
          + extractors[position:])


def shared_models(config: tfma.EvalConfig, model_dir: str, baseline_dir: Optional[str],
                  candidate: Optional[tfma.types.EvalSharedModel] = None) -> tuple:
  """(the config with TFMA's defaults for this set of models, the EvalSharedModels).

  As TFX's Evaluator: with no baseline the change thresholds are rubber-stamped (the first
  blessed model has nothing to be compared with); with one, TFMA evaluates both. `candidate`,
  an EvalSharedModel of `model_dir` made for another split's config, is reused: Beam's shared
  handle then loads the SavedModel once for both evaluations.
  """
  copy = tfma.EvalConfig()
  copy.CopyFrom(config)
  config = copy
  if candidate is not None and baseline_dir is None:
    config.model_specs[0].name = candidate.model_name
  config = tfma.utils.update_eval_config_with_defaults(
      config, has_baseline=baseline_dir is not None, rubber_stamp=True)
  tfma.utils.verify_eval_config(config)
  models = []
  for spec in config.model_specs:
    if spec.is_baseline:
      models.append(tfma.default_eval_shared_model(baseline_dir, model_name=spec.name,
                                                   eval_config=config))
    elif candidate is not None and candidate.model_name == spec.name:
      models.append(candidate)
    else:
      models.append(tfma.default_eval_shared_model(
          model_dir, model_name=spec.name, eval_config=config, rubber_stamp=baseline_dir is None))
  return config, models[0] if len(models) == 1 else models


def _candidate_model(models) -> tfma.types.EvalSharedModel:
  return next(m for m in (models if isinstance(models, list) else [models]) if not m.is_baseline)


def add_to_pipeline(pipeline: beam.Pipeline, evaluations: Sequence[SplitEvaluation],
                    model_dir: str, baseline_dir: Optional[str], batch_size: int,
                    model_name: str) -> None:
  """Adds reading, extraction, evaluation and writing of each split to `pipeline`; the first
  split is compared with the baseline (when there is one), the others are not."""
  candidate = None
  for index, evaluation in enumerate(evaluations):
    evaluation.config, models = shared_models(
        evaluation.config, model_dir, baseline_dir if index == 0 else None, candidate)
    candidate = _candidate_model(models)
    prefix = evaluation.split.capitalize()
    records = (pipeline
               | f'{prefix}Read' >> beam.io.ReadFromTFRecord(evaluation.file_pattern))
    if evaluation.limit > 0:
      records = records | f'{prefix}Sample' >> _hash_sample(evaluation.limit)
    tfxio = tf_example_record.TFExampleBeamRecord(
        physical_format='tfrecords_gzip', raw_record_column_name=tfma.ARROW_INPUT_COLUMN,
        telemetry_descriptors=['EmbeddingEvaluator'])
    _ = (records
         | f'{prefix}ToRecordBatches' >> tfxio.BeamSource(batch_size)
         | f'{prefix}ExtractEvaluateAndWriteResults' >> tfma.ExtractEvaluateAndWriteResults(
             eval_shared_model=models, eval_config=evaluation.config,
             extractors=_extractors(evaluation, models, model_name),
             output_path=evaluation.output_path))


def read_capture(evaluation: SplitEvaluation) -> Dict[str, np.ndarray]:
  """The per-drawing arrays one evaluation saved, in drawing-id order."""
  with tf.io.gfile.GFile(os.path.join(evaluation.capture_dir, CAPTURE_FILE), 'rb') as f:
    with np.load(io.BytesIO(f.read())) as data:
      arrays = {key: data[key] for key in data.files}
  if not arrays:
    raise ValueError(f'{evaluation.file_pattern}: no examples to evaluate in the '
                     f'{evaluation.split} split')
  order = np.argsort(arrays['id'], kind='stable')
  return {key: value[order] for key, value in arrays.items()}
