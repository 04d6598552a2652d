"""ModelComparison on two real metrics.json files made by the Evaluator's compute_metrics."""
import json
import os

import numpy as np
import pytest
from tfx.types import standard_artifacts

from components import artifact_types
from components.evaluator import executor as evaluator_executor
from components.evaluator import outputs as evaluation_outputs
from components.model_comparison import component as comparison_component
from components.model_comparison import executor as comparison_executor

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


def _evaluated(name, skill, seed, test_size=24):
  """(metrics.json, the Embeddings artifact's arrays) of a made-up model."""
  rng = np.random.default_rng(seed)
  train, test = _split(rng, 40, skill), _split(rng, test_size, skill)
  metrics, per_query = evaluator_executor.compute_metrics(name, train, test, CATEGORIES)
  metrics['blessed'] = skill > 1
  return metrics, {'id': test['id'], 'category': test['category'],
                   'predicted': test['predicted'], **per_query}


def _metrics(name, skill, seed):
  return _evaluated(name, skill, seed)[0]


def _embeddings(root, name, per_query):
  artifact = artifact_types.Embeddings()
  artifact.uri = os.path.join(root, f'{name}-embeddings')
  os.makedirs(artifact.uri)
  evaluator_executor._write_npz(artifact.uri, per_query)  # pylint: disable=protected-access
  return artifact


def _evaluation(root, metrics):
  artifact = standard_artifacts.ModelEvaluation()
  artifact.uri = os.path.join(root, metrics['model_name'])
  os.makedirs(artifact.uri)
  with open(os.path.join(artifact.uri, evaluation_outputs.METRICS_FILE), 'w') as f:
    json.dump(metrics, f)
  return artifact


def test_every_metric_is_compared(tmp_path):
  first, second = _metrics('sknet', 3.0, 0), _metrics('skresnet', 0.5, 1)
  output = artifact_types.Comparison()
  output.uri = str(tmp_path / 'comparison')
  os.makedirs(output.uri)
  executor = comparison_component.ModelComparison.EXECUTOR_SPEC.executor_class()
  executor.Do({'first_evaluation': [_evaluation(str(tmp_path), first)],
               'second_evaluation': [_evaluation(str(tmp_path), second)]},
              {'comparison': [output]}, {})
  result = comparison_executor.read_comparison(output.uri)
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
  with open(os.path.join(output.uri, comparison_executor.COMPARISON_MARKDOWN)) as f:
    markdown = f.read()
  assert '| `retrieval.l2.map` |' in markdown
  assert markdown.count('\n| `') == len(result['rows']) + len(
      [p for p in comparison_executor.HEADLINE_ROWS if p in rows])
  assert result['schema_version'] == 2
  assert result['paired_difference'] is None  # No embeddings given.
  assert 'Paired difference' not in markdown


def test_intervals_of_each_model_hold_its_values():
  metrics = _metrics('sknet', 1.5, 0)
  for key in evaluation_outputs.INTERVALS:
    value, interval = metrics[key[:-len('_ci95')]], metrics[key]
    assert interval[0] <= value <= interval[1], key
  assert metrics['ci95_method']['resamples'] == 2000
  json.dumps(metrics, allow_nan=False)  # Strict JSON, as the Evaluator writes it.


def test_paired_difference_from_the_embeddings(tmp_path):
  (first, first_pq), (second, second_pq) = (_evaluated('sknet', 4.0, 0, test_size=200),
                                            _evaluated('skresnet', 0.3, 1, test_size=200))
  output = artifact_types.Comparison()
  output.uri = str(tmp_path / 'comparison')
  os.makedirs(output.uri)
  root = str(tmp_path)
  executor = comparison_component.ModelComparison.EXECUTOR_SPEC.executor_class()
  executor.Do({'first_evaluation': [_evaluation(root, first)],
               'second_evaluation': [_evaluation(root, second)],
               'first_embeddings': [_embeddings(root, 'sknet', first_pq)],
               'second_embeddings': [_embeddings(root, 'skresnet', second_pq)]},
              {'comparison': [output]}, {})
  result = comparison_executor.read_comparison(output.uri)
  paired = result['paired_difference']
  assert paired['difference_of'] == 'sknet - skresnet' and paired['test_drawings'] == 200
  accuracy = paired['test_accuracy']
  assert accuracy['difference'] == pytest.approx(first['test_accuracy'] - second['test_accuracy'])
  assert paired['map']['difference'] == pytest.approx(first['map'] - second['map'])
  assert accuracy['ci95'][0] > 0 and accuracy['excludes_zero'] is True  # Far more skill.
  assert paired['map']['excludes_zero'] is True
  assert output.get_int_custom_property('test_accuracy_difference_significant') == 1
  with open(os.path.join(output.uri, comparison_executor.COMPARISON_MARKDOWN)) as f:
    markdown = f.read()
  # A reader sees the models' titles; comparison.json keeps the identifiers.
  assert markdown.startswith('# skNet vs skResNet\n')
  assert '## Paired difference (skNet - skResNet)' in markdown
  assert markdown.index('## Paired difference') < markdown.index('## Every metric')
  row = next(line for line in markdown.splitlines() if line.startswith('| test top-1 accuracy'))
  assert row.endswith('| yes |')
  # The table of metrics shows the same sign as the paired difference: first minus second.
  assert '| difference (skNet - skResNet) |' in markdown
  top1 = next(line for line in markdown.splitlines()
              if line.startswith('| `classification.test.top1`'))
  assert top1.split(' | ')[3] == f'{first["test_accuracy"] - second["test_accuracy"]:+.4f}'


def test_same_model_twice_has_no_significant_difference():
  metrics, per_query = _evaluated('sknet', 1.0, 0, test_size=100)
  paired = comparison_executor.compare(metrics, metrics, per_query, per_query)['paired_difference']
  assert paired['test_accuracy']['ci95'] == [0.0, 0.0]
  assert paired['map']['excludes_zero'] is False


def test_undefined_values_win_nothing():
  first, second = _metrics('sknet', 2.0, 0), _metrics('skresnet', 2.0, 0)
  second['retrieval']['l2']['map'] = None
  rows = {r['metric']: r for r in comparison_executor.compare(first, second)['rows']}
  assert rows['retrieval.l2.map']['better'] is None
  assert rows['retrieval.l2.map']['difference'] is None
  assert rows['classification.test.top1']['better'] == 'tie'
