"""Benchmark: the EmbeddingEvaluator through TFMA vs the direct loop it replaced (results:
benchmarks/README.md, "## Evaluation").

  .venv/bin/python benchmarks/evaluation.py default --lock LOCK_FILE \
      --examples PIPELINE_ROOT/QuickDrawExampleGen/examples/N \
      --model PIPELINE_ROOT/Trainer.sknet/model/N [PIPELINE_ROOT/Trainer.skresnet/model/N]
  .venv/bin/python benchmarks/evaluation.py scale --work-dir DIR --repeats 3

Two variants, timed in turn in one process (A B A B ...), medians reported:
  tfma    the component's executor as the pipeline runs it: constructed with the profile's Beam
          pipeline args (which, as under TFX's runners, builds TFX's ephemeral sdist), then
          Do(): TFMA's Beam pipeline over both splits, the raw-pixel floor, compute_metrics,
          TFMA's results read back, metrics.json and the npz written.
  direct  the previous evaluator (before TFMA), kept here only for this comparison: one
          SavedModel load, a tf.data loop over batches of serialized tf.Examples through the
          `embed` signature per split (the test split's raw pixels decoded in the same loop),
          compute_metrics, metrics.json and the npz written. Its blessing (thresholds and one
          model card read from the registry) is left out.
Both evaluate the same train cap: direct a seeded shuffle(250000).take(cap), tfma its hash sample.

Scale points:
  default  a default-profile run's examples (10 categories x (120 train + 30 test)) and its
           trained models; the default profile's Beam args (in memory, one worker), the whole
           train split.
  scale    100 categories x (200 train + 50 test) drawings from the shared simplified files,
           sampled and rendered with ExampleGen's code into gzipped tf.Examples (2 files per
           split), and, unless --model is given, a synthetic model with the Trainer's export
           contract (a PNG decode and two matrix products, about 1,500 drawings/s here, where
           skNet does about 15), both written under --work-dir by evaluation_inputs.py and
           reused. The full profile's train cap (20,000) and Beam args (two worker processes).
           With inference this cheap, the ratio measures the evaluation machinery.
Each run records where its time went: seconds per stage, by wrapping functions in this process
(work inside Beam's worker processes is not seen). The component's own check that TFMA's values
equal its per-drawing computation (tfma_results._agree) is recorded when it fails, not raised.
"""
import argparse
import collections
import contextlib
import datetime
import fcntl
import functools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from unittest import mock

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from common import legacy_keras  # pylint: disable=g-import-not-at-top
legacy_keras.enable()  # Before TensorFlow is imported.

# pylint: disable=g-import-not-at-top
import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from benchmarks import evaluation_inputs
from benchmarks import result_paths
from common import progress
from components.evaluator import component as evaluator_component
from components.evaluator import executor as evaluator_executor
from components.evaluator import outputs as evaluation_outputs
from components.evaluator import tfma_results
from models import features
from models import preprocessing
from pipeline import config as config_lib

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
VARIANTS = ('tfma', 'direct')
BATCH_SIZE = 64  # The component's default; the pipeline does not set it.
TRAIN_SAMPLE_BUFFER = 250_000


def machine() -> dict:
  fields = {}
  with open('/proc/cpuinfo') as f:
    for line in f:
      key, _, value = line.partition(':')
      fields.setdefault(key.strip(), value.strip())
  flags = fields.get('flags', '').split()
  git = lambda *args: subprocess.run(['git', *args], cwd=ROOT, text=True,
                                     capture_output=True).stdout.strip()
  return {'cpu_model': fields.get('model name'), 'cpu_family': fields.get('cpu family'),
          'cpu_model_number': fields.get('model'), 'cpus': os.cpu_count(),
          'avx512': sorted(f for f in flags if f.startswith('avx512')),
          'amx': sorted(f for f in flags if f.startswith('amx')),
          'commit': git('rev-parse', '--short', 'HEAD'),
          'working_tree_modified': bool(git('status', '--porcelain', '--untracked-files=no')),
          'date_utc': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M'),
          'load_average_at_start': os.getloadavg()}


class Stages:
  """Seconds and calls per stage of a run, by wrapping the functions that make the stages."""

  def __init__(self):
    self.seconds, self.calls = collections.defaultdict(float), collections.Counter()
    self.check_failures = []

  def _wrap(self, original, label):
    @functools.wraps(original)
    def timed(*args, **kwargs):
      start = time.perf_counter()
      try:
        return original(*args, **kwargs)
      finally:
        self.seconds[label] += time.perf_counter() - start
        self.calls[label] += 1
    return timed

  def watching(self, targets) -> contextlib.ExitStack:
    """`targets`: (object, attribute, label); each attribute is replaced by a timed wrapper."""
    stack = contextlib.ExitStack()
    for owner, name, label in targets:
      stack.enter_context(mock.patch.object(owner, name, self._wrap(getattr(owner, name), label)))
    return stack

  def timed(self, label, function, *args, **kwargs):
    return self._wrap(function, label)(*args, **kwargs)

  def as_dict(self) -> dict:
    return {label: {'seconds': round(s, 2), 'calls': self.calls[label]}
            for label, s in self.seconds.items()}


def _exec_properties(config, model_name: str) -> dict:
  """As pipeline/pipeline.py passes them to EmbeddingEvaluator."""
  drop = lambda value: -1.0 if value is None else value
  return {'model_name': model_name, 'min_test_accuracy': config.min_test_accuracy,
          'min_map': config.min_map, 'max_accuracy_drop': drop(config.max_accuracy_drop),
          'max_map_drop': drop(config.max_map_drop),
          'train_eval_max_examples': config.train_eval_max_examples,
          'raw_pixels_size': config.image_size if config.raw_pixels_floor else 0}


def run_tfma(examples_uri: str, model_uri: str, model_name: str, config, out_dir: str) -> tuple:
  """(stages, metrics): the component's executor, constructed and run as TFX's runner does."""
  from components.evaluator import tfma_evaluation  # Imported with the component; named for wrapping.
  from tensorflow_model_analysis.metrics import tf_metric_wrapper
  examples = standard_artifacts.Examples()
  examples.uri, examples.split_names = examples_uri, '["train", "test"]'
  model = standard_artifacts.Model()
  model.uri, model.id = model_uri, 1
  outputs = evaluator_component.output_artifacts(out_dir)
  stages = Stages()
  agree = tfma_results._agree  # pylint: disable=protected-access

  def agree_or_record(*args):
    """The component's check that TFMA's values equal its own; a failure is recorded (and the
    run goes on), so a disagreement costs no timing."""
    try:
      agree(*args)
    except ValueError as e:
      stages.check_failures.append(str(e))

  with mock.patch.object(tfma_results, '_agree', agree_or_record), stages.watching([
      (tf.saved_model, 'load', 'saved_model_loads_in_process'),
      (tf.compat.v1.saved_model, 'load_v2', 'tfma_model_loads_in_process'),
      (tf.keras.models, 'load_model', 'tfma_keras_model_loads_in_process'),
      (tfma_evaluation, 'add_to_pipeline', 'beam_construction'),
      (beam.Pipeline, '__exit__', 'beam_run'),
      (tf_metric_wrapper._CompilableMetricsCombiner,  # pylint: disable=protected-access
       '_process_batch', 'keras_metric_batches_in_process'),
      (tfma_evaluation, 'read_capture', 'read_capture'),
      (evaluator_executor, 'raw_pixels', 'raw_pixels'),
      (evaluator_executor, 'compute_metrics', 'compute_metrics'),
      (tfma_results, 'read', 'tfma_results_read'),
      (evaluator_executor, '_write_npz', 'write_npz')]):
    executor = stages.timed(
        'executor_construction', evaluator_component.EmbeddingEvaluator.EXECUTOR_SPEC
        .executor_class, base_beam_executor.BaseBeamExecutor.Context(
            beam_pipeline_args=list(config.beam_pipeline_args), tmp_dir=out_dir))
    executor.Do({'examples': [examples], 'model': [model]}, outputs,
                _exec_properties(config, model_name))
  return stages, evaluation_outputs.read_metrics(outputs['evaluation'][0].uri)


def _batches(pattern: str, batch_size: int, limit: int):
  dataset = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)), compression_type='GZIP')
  if limit > 0:
    dataset = dataset.shuffle(TRAIN_SAMPLE_BUFFER, seed=0).take(limit)
  return iter(dataset.batch(batch_size))


def run_split(embed, pattern: str, split: str, batch_size: int, limit: int = 0,
              pixels_size: int = 0) -> dict:
  """The previous evaluator's per-split loop (its `_run_split`), unchanged but for the path."""
  keys = (features.CATEGORY_KEY, features.ID_KEY) + (
      (features.IMAGE_KEY,) if pixels_size else ())
  parse_spec = {key: tf.io.FixedLenFeature([], tf.string) for key in keys}
  parts = {'embedding': [], 'predicted': [], 'probabilities': [], 'category': [], 'id': []}
  if pixels_size:
    parts['pixels'] = []
  with progress.Progress(limit or None, f'direct: embedding the {split} split', 'drawings',
                         log_every=15.0) as shown:
    for serialized in _batches(pattern, batch_size, limit):
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
      shown.update(len(serialized))
  result = {key: np.concatenate(value) for key, value in parts.items()}
  for key in ('predicted', 'category', 'id'):
    result[key] = np.char.decode(result[key].astype(np.bytes_), 'utf-8')
  return result


def run_direct(examples_uri: str, model_uri: str, model_name: str, config, out_dir: str) -> tuple:
  """(stages, metrics): the previous evaluator's work, without its blessing."""
  stages = Stages()
  os.makedirs(out_dir)
  model_dir = os.path.join(model_uri, 'Format-Serving')
  loaded = stages.timed('model_load', tf.saved_model.load, model_dir)
  embed = loaded.signatures['embed']
  categories = evaluator_executor.read_categories(model_dir)
  pattern = lambda split: os.path.join(examples_uri, f'Split-{split}', '*')
  properties = _exec_properties(config, model_name)
  train = stages.timed('train_split', run_split, embed, pattern('train'), 'train', BATCH_SIZE,
                       properties['train_eval_max_examples'])
  test = stages.timed('test_split', run_split, embed, pattern('test'), 'test', BATCH_SIZE,
                      pixels_size=properties['raw_pixels_size'])
  metrics, per_query = stages.timed('compute_metrics', evaluator_executor.compute_metrics,
                                    model_name, train, test, categories)

  def write():
    with open(os.path.join(out_dir, evaluation_outputs.METRICS_FILE), 'w') as f:
      json.dump(metrics, f, indent=2, allow_nan=False)
    evaluator_executor._write_npz(out_dir, {  # pylint: disable=protected-access
        'embedding': test['embedding'], 'category': test['category'], 'id': test['id'],
        'predicted': test['predicted'], 'probabilities': test['probabilities'],
        'class_names': np.array(categories), **per_query})
  stages.timed('write', write)
  return stages, metrics


RUNNERS = {'tfma': run_tfma, 'direct': run_direct}
HEADLINES = ('train_accuracy', 'test_accuracy', 'train_top5_accuracy', 'test_top5_accuracy',
             'map', 'raw_pixels_map', 'train_examples', 'test_examples')


@contextlib.contextmanager
def holding(lock_path: str):
  """An exclusive flock on `lock_path` (none if empty): the machine's other heavy work waits."""
  if not lock_path:
    yield
    return
  with open(lock_path, 'a') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def compare(examples_uri: str, model_uri: str, config, repeats: int, work_dir: str,
            lock_path: str = '') -> dict:
  """Both variants in turn, `repeats` rounds; the lock is held during each run only."""
  model_name = next((part.split('.', 1)[1] for part in model_uri.split(os.sep)
                     if part.startswith('Trainer.')), 'synthetic')
  runs = {variant: [] for variant in VARIANTS}
  for repeat in range(repeats):
    for variant in VARIANTS:
      with holding(lock_path):
        runs[variant].append(_timed_run(variant, examples_uri, model_uri, model_name, config,
                                        work_dir))
      logging.info('%s, repeat %d/%d: %s %.1f s (%.0f drawings/s); stages %s', model_name,
                   repeat + 1, repeats, variant, runs[variant][-1]['seconds'],
                   runs[variant][-1]['drawings'] / runs[variant][-1]['seconds'],
                   json.dumps(runs[variant][-1]['stages']))
  medians = {v: statistics.median(run['seconds'] for run in runs[v]) for v in VARIANTS}
  drawings = runs['direct'][-1]['drawings']
  differences = {key: max(abs(a['metrics'][key] - b['metrics'][key])
                          for a in runs['tfma'] for b in runs['direct'])
                 for key in HEADLINES if runs['direct'][-1]['metrics'][key] is not None}
  return {'model': model_uri, 'model_name': model_name, 'drawings_per_run': drawings,
          'median_seconds': medians,
          'drawings_per_second': {v: round(drawings / medians[v], 1) for v in VARIANTS},
          'ratio_tfma_over_direct': round(medians['tfma'] / medians['direct'], 3),
          'max_metric_difference': differences, 'runs': runs}


def _timed_run(variant: str, examples_uri: str, model_uri: str, model_name: str, config,
               work_dir: str) -> dict:
  out_dir = tempfile.mkdtemp(prefix=f'{variant}-', dir=work_dir)
  # Temporary files of the run (TFX builds an sdist per executor, Beam its own) go with it.
  tempfile.tempdir = out_dir
  load_before = os.getloadavg()[0]
  logging.info('%s: %s ...', model_name, variant)
  start = time.perf_counter()
  try:
    stages, metrics = RUNNERS[variant](examples_uri, model_uri, model_name, config,
                                       os.path.join(out_dir, 'outputs'))
  finally:
    tempfile.tempdir = None
  seconds = time.perf_counter() - start
  shutil.rmtree(out_dir)
  return {'seconds': round(seconds, 2),
          'drawings': metrics['train_examples'] + metrics['test_examples'],
          'load_average_1min': [load_before, os.getloadavg()[0]], 'stages': stages.as_dict(),
          'component_check_failures': stages.check_failures,
          'metrics': {key: metrics.get(key) for key in HEADLINES}}


def _model_artifact_uri(path: str) -> str:
  path = os.path.normpath(path)
  return os.path.dirname(path) if os.path.basename(path) == 'Format-Serving' else path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('point', choices=('default', 'scale'))
  parser.add_argument('--model', nargs='+', default=[],
                      help='Trainer model artifacts (<n> or its Format-Serving folder); scale '
                      'without it: a synthetic model written under --work-dir')
  parser.add_argument('--examples', help='default: the ExampleGen artifact (<n>)')
  parser.add_argument('--work-dir', help='scale: where its examples (and synthetic model) are '
                      'written and kept; both: where each run writes (deleted after the run)')
  parser.add_argument('--source', default=config_lib.default_source())
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--lock', default='', help='a file to flock during each run (and while '
                      'writing the scale data), released in between')
  parser.add_argument('--note', default='', help='recorded in the results (e.g. where the model '
                      'came from)')
  parser.add_argument('--output', help='results JSON (default: benchmarks/results/'
                      'evaluation-<point>.json)')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', force=True)
  for noisy in ('apache_beam', 'absl'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  logging.getLogger('tensorflow').setLevel(logging.ERROR)
  models = [_model_artifact_uri(path) for path in args.model]
  if args.point == 'default':
    if not args.examples or not models:
      parser.error('default needs --examples and --model')
    config, examples_uri = config_lib.profile('default'), os.path.normpath(args.examples)
  else:
    if not args.work_dir:
      parser.error('scale needs --work-dir')
    config = config_lib.profile('full')
    with holding(args.lock):
      examples_uri = evaluation_inputs.write_scale_examples(args.source, args.work_dir)
      models = models or [evaluation_inputs.write_synthetic_model(examples_uri, args.work_dir,
                                                                  config.image_size)]
  work_dir = args.work_dir or tempfile.mkdtemp(prefix='evaluation-benchmark-')
  runs_dir = os.path.join(work_dir, 'runs')
  os.makedirs(runs_dir, exist_ok=True)
  result = {'point': args.point, 'machine': machine(),
            'examples': result_paths.portable(examples_uri, args.work_dir),
            'beam_pipeline_args': list(config.beam_pipeline_args),
            'train_eval_max_examples': config.train_eval_max_examples,
            'raw_pixels_size': _exec_properties(config, '')['raw_pixels_size'],
            'batch_size': BATCH_SIZE, 'repeats': args.repeats,
            'metrics_json_and_npz_written': True, 'note': args.note, 'models': []}
  for model in models:
    serving = os.path.join(model, 'Format-Serving')
    row = compare(examples_uri, model, config, args.repeats, runs_dir, args.lock)
    row['model'] = result_paths.portable(model, args.work_dir)
    row['model_serving_dir_resolved'] = result_paths.portable(os.path.realpath(serving),
                                                              args.work_dir)
    row['model_categories'] = len(evaluator_executor.read_categories(serving))
    result['models'].append(row)
  result['machine']['load_average_at_end'] = os.getloadavg()
  output = args.output or os.path.join(RESULTS, f'evaluation-{args.point}.json')
  with open(output, 'w') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  for row in result['models']:
    print(f"{row['model_name']}: tfma {row['median_seconds']['tfma']:.1f} s, direct "
          f"{row['median_seconds']['direct']:.1f} s (medians of {args.repeats}), ratio "
          f"{row['ratio_tfma_over_direct']:.2f}; {row['drawings_per_run']} drawings per run")
  print(f'results: {output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
