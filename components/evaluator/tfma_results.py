"""What the Evaluator's TFMA evaluation found, read back with TFMA's own loaders.

`read(uri, categories)` turns `tfma.load_eval_result` / `tfma.load_validation_result` of an
evaluation artifact (tfma_evaluation.py writes it) into plain values: top-1/top-5
accuracy per split, the test confusion matrix in category order, the retrieval mAP, the
baseline's values, and the blessing with one check per threshold. `merge_into` makes them the
values of metrics.json, after checking that the per-drawing outputs the component kept agree.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.writers import eval_config_writer

from components.evaluator import tfma_evaluation as evaluation_lib

# The component's own per-drawing computation and TFMA's must agree to float32 rounding.
AGREEMENT_TOLERANCE = 1e-6
# The values thresholds apply to: (metrics.json name, TFMA output, TFMA metric).
CHECKED = (('test_accuracy', evaluation_lib.PROBABILITIES, evaluation_lib.ACCURACY),
           ('map', evaluation_lib.EMBEDDING, evaluation_lib.RETRIEVAL_MAP))


def _overall(result) -> Dict:
  for slice_key, values in result.slicing_metrics:
    if not slice_key:
      return values
  raise ValueError('the TFMA evaluation has no overall slice')


def _value(metrics: Dict, output: str, name: str) -> Optional[float]:
  entry = metrics.get(output, {}).get('', {}).get(name)
  if entry is None or 'doubleValue' not in entry:
    return None
  value = float(entry['doubleValue'])
  return None if np.isnan(value) else value


def _confusion(result, num_categories: int) -> List[List[int]]:
  """Rows: true category, columns: predicted (argmax), as MultiClassConfusionMatrixPlot counts."""
  matrix = np.zeros((num_categories, num_categories), np.int64)
  for slice_key, plots in result.plots:
    if slice_key:
      continue
    plot = plots[evaluation_lib.PROBABILITIES]['']['multiClassConfusionMatrixAtThresholds']
    for entry in plot['matrices'][0].get('entries', []):
      # proto3 JSON leaves out zeros: a missing class id is class 0.
      actual, predicted = (int(entry.get(key, 0)) for key in ('actualClassId', 'predictedClassId'))
      # A true category outside the model's vocabulary (label -1) has no row, as in sklearn's.
      if 0 <= actual < num_categories and 0 <= predicted < num_categories:
        matrix[actual, predicted] += int(round(entry.get('numWeightedExamples', 0.0)))
  return matrix.tolist()


def _split_values(metrics: Dict) -> Dict:
  output = evaluation_lib.PROBABILITIES
  return {'top1': _value(metrics, output, evaluation_lib.ACCURACY),
          'top5': _value(metrics, output, evaluation_lib.TOP5_ACCURACY),
          'examples': int(_value(metrics, output, evaluation_lib.EXAMPLE_COUNT) or 0)}


def _checks(candidate: Dict, baseline: Optional[Dict], validation,
            thresholds: evaluation_lib.Thresholds) -> List[Dict]:
  """One entry per threshold, passed unless TFMA's validation reported it failed."""
  failed = {(f.metric_key.name, f.metric_key.is_diff): f.message
            for per_slice in validation.metric_validations_per_slice for f in per_slice.failures}
  checks = []
  for name, output, metric, bound, allowed in (
      ('test_accuracy', evaluation_lib.PROBABILITIES, evaluation_lib.ACCURACY,
       thresholds.min_test_accuracy, thresholds.max_accuracy_drop),
      ('map', evaluation_lib.EMBEDDING, evaluation_lib.RETRIEVAL_MAP, thresholds.min_map,
       thresholds.max_map_drop)):
    value = _value(candidate, output, metric)
    checks.append({
        'name': f'min_{name}', 'kind': 'value', 'passed': (metric, False) not in failed,
        'value': value, 'threshold': bound,
        'detail': failed.get((metric, False)) or f'{name} {value} >= {bound}'})
    if allowed is None:
      continue
    if baseline is None:
      checks.append({'name': f'{name}_vs_baseline', 'kind': 'change', 'passed': True,
                     'value': None, 'threshold': -allowed or 0.0,
                     'detail': 'no blessed baseline yet: rubber-stamped (first blessing)'})
      continue
    diff = _value(candidate, output, f'{metric}_diff')
    checks.append({
        'name': f'{name}_vs_baseline', 'kind': 'change', 'passed': (metric, True) not in failed,
        'value': diff, 'threshold': -allowed or 0.0,
        'detail': failed.get((metric, True)) or
                  f'{name} {value} vs baseline {_value(baseline, output, metric)}: '
                  f'change {diff} >= {-allowed or 0.0}'})
  return checks


def read(uri: str, categories: Sequence[str], thresholds: evaluation_lib.Thresholds) -> Dict:
  """The evaluation artifact's TFMA results as plain values (see the module docstring)."""
  _, _, _, model_locations = eval_config_writer.load_eval_run(uri)
  with_baseline = evaluation_lib.BASELINE in model_locations
  candidate_name = evaluation_lib.CANDIDATE if with_baseline else ''
  candidate_result = tfma.load_eval_result(uri, model_name=candidate_name)
  candidate = _overall(candidate_result)
  baseline = (_overall(tfma.load_eval_result(uri, model_name=evaluation_lib.BASELINE))
              if with_baseline else None)
  validation = tfma.load_validation_result(uri)
  train_uri = os.path.join(uri, evaluation_lib.TRAIN_SUBDIR)
  train = (_split_values(_overall(tfma.load_eval_result(train_uri)))
           if tf.io.gfile.exists(train_uri) else None)
  test = _split_values(candidate)
  test['confusion_matrix'] = _confusion(candidate_result, len(categories))
  checks = _checks(candidate, baseline, validation, thresholds)
  return {
      'test': test, 'train': train,
      'map': _value(candidate, evaluation_lib.EMBEDDING, evaluation_lib.RETRIEVAL_MAP),
      'baseline': None if baseline is None else {
          name: _value(baseline, output, metric) for name, output, metric in CHECKED},
      'blessing': {'blessed': bool(validation.validation_ok),
                   'rubber_stamp': bool(validation.rubber_stamp), 'checks': checks},
  }


def _agree(ours, theirs, what: str) -> None:
  if ours is None and theirs is None:
    return
  if ours is None or theirs is None or abs(ours - theirs) > AGREEMENT_TOLERANCE:
    raise ValueError(f'{what}: TFMA computed {theirs}, the per-drawing outputs give {ours}; '
                     'both came from one inference, so this is a bug')


def merge_into(metrics: Dict, tfma_view: Dict) -> None:
  """TFMA's values become metrics.json's, once they agree with the per-drawing computation."""
  for split in ('train', 'test'):
    values = tfma_view[split]
    if values is None:
      continue
    section = metrics['classification'][split]
    for key in ('top1', 'top5'):
      _agree(section[key], values[key], f'{split} {key} accuracy')
      section[key] = values[key]
    metrics[f'{split}_accuracy'] = values['top1']
    metrics[f'{split}_top5_accuracy'] = values['top5']
  ours = metrics['classification']['test']['confusion_matrix']
  if ours != tfma_view['test']['confusion_matrix']:
    raise ValueError('test confusion matrix: TFMA and the per-drawing outputs differ; both came '
                     'from one inference, so this is a bug')
  _agree(metrics['map'], tfma_view['map'], 'retrieval mAP')
  metrics['map'] = tfma_view['map']
  metrics['baseline'] = tfma_view['baseline']
