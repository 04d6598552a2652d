"""ModelComparison on two real metrics.json files made by the Evaluator's compute_metrics."""
import json
import os

import numpy as np
import pytest
from tfx.types import standard_artifacts

from components import embedding_evaluator
from components import model_comparison

CATEGORIES = ['arm', 'cake', 'frog', 'stairs']


def _split(rng, n, skill):
  true_ids = np.arange(n) % len(CATEGORIES)
  logits = rng.normal(size=(n, len(CATEGORIES)))
  logits[np.arange(n), true_ids] += skill
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  names = np.array(CATEGORIES)
  embedding = np.maximum(logits @ rng.normal(size=(len(CATEGORIES), 16)), 0).astype(np.float32)
  return {'category': names[true_ids], 'predicted': names[probabilities.argmax(axis=1)],
          'probabilities': probabilities.astype(np.float32), 'embedding': embedding,
          'id': np.array([f'd{i}' for i in range(n)]),
          'pixels': rng.random(size=(n, 25)).astype(np.float32)}


def _metrics(name, skill, seed):
  rng = np.random.default_rng(seed)
  metrics, _ = embedding_evaluator.compute_metrics(
      name, _split(rng, 40, skill), _split(rng, 24, skill), CATEGORIES)
  metrics['blessed'] = skill > 1
  return metrics


def _evaluation(root, metrics):
  artifact = standard_artifacts.ModelEvaluation()
  artifact.uri = os.path.join(root, metrics['model_name'])
  os.makedirs(artifact.uri)
  with open(os.path.join(artifact.uri, embedding_evaluator.METRICS_FILE), 'w') as f:
    json.dump(metrics, f)
  return artifact


def test_every_metric_is_compared(tmp_path):
  first, second = _metrics('sknet', 3.0, 0), _metrics('skresnet', 0.5, 1)
  output = model_comparison.Comparison()
  output.uri = str(tmp_path / 'comparison')
  os.makedirs(output.uri)
  executor = model_comparison.ModelComparison.EXECUTOR_SPEC.executor_class()
  executor.Do({'first_evaluation': [_evaluation(str(tmp_path), first)],
               'second_evaluation': [_evaluation(str(tmp_path), second)]},
              {'comparison': [output]}, {})
  result = model_comparison.read_comparison(output.uri)
  assert result['models'] == ['sknet', 'skresnet']
  rows = {row['metric']: row for row in result['rows']}
  # Every leaf metric of the sections, including per-class and per-category values.
  for path, value in (('classification.test.top1', first['test_accuracy']),
                      ('retrieval.l2.map', first['map']),
                      ('retrieval.cosine.map', first['map_cosine']),
                      ('floors.raw_pixels_map', first['raw_pixels_map'])):
    assert rows[path]['values']['sknet'] == pytest.approx(value)
  assert rows['classification.test.per_class.frog.accuracy']['values']['skresnet'] == (
      pytest.approx(second['classification']['test']['per_class']['frog']['accuracy']))
  assert rows['retrieval.l2.per_category_ap.cake']['values']['sknet'] == pytest.approx(
      first['retrieval']['l2']['per_category_ap']['cake'])
  assert rows['retrieval.l2.precision_at_k.5']['values']['skresnet'] == pytest.approx(
      second['retrieval']['l2']['precision_at_k']['5'])
  assert rows['retrieval.l2.pr_curve_11pt.precision@0.3']['values']['sknet'] == pytest.approx(
      first['retrieval']['l2']['pr_curve_11pt']['precision'][3])
  assert not any('confusion_matrix' in path or 'support' in path for path in rows)
  row = rows['classification.test.top1']
  assert row['difference'] == pytest.approx(second['test_accuracy'] - first['test_accuracy'])
  assert row['better'] == 'sknet'  # Far more skill.
  assert rows['floors.random_map']['better'] is None
  assert rows['floors.random_map']['difference'] == 0.0  # Same labels: same floor.
  assert sum(result['wins'].values()) == sum(r['better'] is not None for r in result['rows'])
  assert result['blessed'] == {'sknet': True, 'skresnet': False}
  assert output.get_string_custom_property('better_map') == rows['retrieval.l2.map']['better']
  with open(os.path.join(output.uri, model_comparison.COMPARISON_MARKDOWN)) as f:
    markdown = f.read()
  assert '| `retrieval.l2.map` |' in markdown
  assert markdown.count('\n| `') == len(result['rows']) + len(
      [p for p in model_comparison.HEADLINE_ROWS if p in rows])


def test_undefined_values_win_nothing():
  first, second = _metrics('sknet', 2.0, 0), _metrics('skresnet', 2.0, 0)
  second['retrieval']['l2']['map'] = None
  rows = {r['metric']: r for r in model_comparison.compare(first, second)['rows']}
  assert rows['retrieval.l2.map']['better'] is None
  assert rows['retrieval.l2.map']['difference'] is None
  assert rows['classification.test.top1']['better'] == 'tie'
