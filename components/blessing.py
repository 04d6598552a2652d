"""The Evaluator's blessing decision: thresholds, and optionally the currently pushed model.

The pushed model is read from the registry (`<registry>/<model>/<version>/model_card.json`,
see components/registry_store.py) tolerantly: anything unreadable means "no pushed model",
with the reason in the check's detail, never a failed evaluation.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf

from components.registry_store import MODEL_CARD_FILE

COMPARED_METRICS = ('test_accuracy', 'map')


def _version_key(name: str) -> Tuple[int, float, str]:
  """Numeric versions (Unix times) in numeric order, after any non-numeric names."""
  try:
    return (1, float(name), name)
  except ValueError:
    return (0, 0.0, name)


def pushed_model(registry_dir: str, model_name: str) -> Tuple[Optional[Dict], str]:
  """(model card of the newest version with readable COMPARED_METRICS, or None; why/where)."""
  model_dir = os.path.join(registry_dir, model_name)
  if not registry_dir or not tf.io.gfile.isdir(model_dir):
    return None, f'no registry folder {model_dir}'
  try:
    versions = sorted((v.rstrip('/') for v in tf.io.gfile.listdir(model_dir)),
                      key=_version_key, reverse=True)
  except tf.errors.OpError as e:
    return None, f'cannot list {model_dir}: {e}'
  problems = []
  for version in versions:
    path = os.path.join(model_dir, version, MODEL_CARD_FILE)
    try:
      with tf.io.gfile.GFile(path) as f:
        card = json.load(f)
      metrics = card['metrics']
      values = {key: float(metrics[key]) for key in COMPARED_METRICS}
    except (tf.errors.OpError, OSError, ValueError, KeyError, TypeError) as e:
      problems.append(f'{path}: {type(e).__name__}')
      continue
    return {'version_dir': os.path.join(model_dir, version), 'metrics': values}, path
  detail = f'no readable {MODEL_CARD_FILE} with {", ".join(COMPARED_METRICS)} in {model_dir}'
  if problems:
    logging.warning('Blessing: skipped unreadable model cards: %s', '; '.join(problems))
    detail += f' (skipped {len(problems)} unreadable)'
  return None, detail


def _check(name: str, passed: bool, value, threshold, detail: str) -> Dict:
  return {'name': name, 'passed': bool(passed), 'value': value, 'threshold': threshold,
          'detail': detail}


def decide(metrics: Dict, min_test_accuracy: float, min_map: float,
           not_worse_than_pushed: bool = False, registry_dir: str = '',
           model_name: str = '') -> Dict:
  """The `blessing` section of metrics.json: every check and the overall decision."""
  accuracy, mean_ap = metrics['test_accuracy'], metrics['map']
  checks: List[Dict] = [
      _check('min_test_accuracy', accuracy >= min_test_accuracy, accuracy, min_test_accuracy,
             f'test accuracy {accuracy:.4f} vs minimum {min_test_accuracy}'),
      _check('min_map', mean_ap is not None and mean_ap >= min_map, mean_ap, min_map,
             'no query with a relevant item' if mean_ap is None else
             f'mAP {mean_ap:.4f} vs minimum {min_map}'),
  ]
  if not_worse_than_pushed:
    pushed, where = pushed_model(registry_dir, model_name)
    if pushed is None:
      checks.append(_check('not_worse_than_pushed', True, None, None,
                           f'nothing to compare with: {where}'))
    else:
      worse = [key for key in COMPARED_METRICS
               if metrics[key] is None or metrics[key] < pushed['metrics'][key]]
      checks.append(_check(
          'not_worse_than_pushed', not worse, None, None,
          f'{pushed["version_dir"]}: ' + ', '.join(
              f'{key} {metrics[key]} vs pushed {pushed["metrics"][key]}'
              for key in COMPARED_METRICS) + (f'; worse: {", ".join(worse)}' if worse else '')))
  return {'blessed': all(check['passed'] for check in checks), 'checks': checks}
