"""The report of a made-up run whose metrics come from the Evaluator's own compute_metrics:
100 categories as figures rather than tables, and the 95% intervals in the tables and
conclusions (no pipeline)."""
import dataclasses
import os
import re
import types

import numpy as np
import pytest

from pipeline import report
from pipeline import report_data
from pipeline import report_findings
from pipeline import report_tables
from tests import report_fixtures as fixtures


def _node(node_id, start, end, outputs):
  return types.SimpleNamespace(node_id=node_id, state='COMPLETE', outputs=outputs,
                               start_time=start, end_time=end, seconds=end - start)


def _evaluated(name, categories, skill, seed, test_per_category=5):
  """A made-up model's ModelResults, its metrics from the Evaluator's own compute_metrics."""
  from components import embedding_evaluator  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  names = np.array(categories)

  def split(per_category, prefix):
    n = per_category * len(categories)
    true_ids = np.arange(n) % len(categories)
    logits = rng.normal(size=(n, len(categories)))
    # Some categories are easier than others: the sorted figures have something to sort.
    logits[np.arange(n), true_ids] += skill * (1 + true_ids / len(categories))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {'category': names[true_ids], 'predicted': names[probabilities.argmax(axis=1)],
            'probabilities': probabilities.astype(np.float32),
            'embedding': np.maximum(logits @ rng.normal(size=(len(categories), 16)),
                                    0).astype(np.float32),
            'id': np.array([f'{prefix}{i:05d}' for i in range(n)])}

  test = split(test_per_category, 't')
  metrics, per_query = embedding_evaluator.compute_metrics(name, split(2, 'r'), test,
                                                           categories)
  per_query = {'id': test['id'], 'category': test['category'],
               'predicted': test['predicted'], **per_query}
  return report_data.ModelResults(name, metrics, {}, {'epochs': 1}, per_query, '')


def _synthetic_run(tmp_path, num_categories, paired=True, first_skill=4.0, second_skill=1.0):
  from components import model_comparison  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  categories = [f'category {i:03d}' for i in range(num_categories)]
  models = [_evaluated('sknet', categories, first_skill, 0),
            _evaluated('skresnet', categories, second_skill, 1)]
  comparison = model_comparison.compare(
      models[0].metrics, models[1].metrics,
      *([m.per_query for m in models] if paired else [None, None]))
  uri = str(tmp_path / 'comparison')
  nodes = {'Trainer.sknet': _node('Trainer.sknet', 0.0, 30.0, {}),
           'ModelComparison': _node('ModelComparison', 30.0, 31.0, {
               'comparison': [metadata_store_pb2.Artifact(uri=uri)]})}
  rng = np.random.default_rng(2)
  drawings = {i: (c, fixtures.png(rng)) for i, c in zip(models[0].per_query['id'],
                                                models[0].per_query['category'])}
  return report_data.RunResults(
      'p', 'r1', 'm.sqlite', nodes, {'num_categories': num_categories, 'train_per_category': 2,
                                     'test_per_category': 5, 'seed': 1}, {}, models, comparison,
      model_comparison.to_markdown(comparison), drawings, 32)


@pytest.fixture(scope='module')
def hundred_categories(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('hundred')
  run = _synthetic_run(tmp_path, 100)
  out = str(tmp_path / 'report')
  md_path, html_path = report.write_report(run, out)
  with open(md_path) as f:
    markdown = f.read()
  with open(html_path) as f:
    page = f.read()
  return run, out, markdown, page


def test_100_categories_are_figures_not_100_row_tables(hundred_categories):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  _, out, markdown, page = hundred_categories
  figures = fixtures.FIGURE_LINK.findall(markdown)
  names = {os.path.basename(f)[:-4] for f in figures}
  assert {'per_category', 'confusion_sknet', 'confusion_skresnet'} <= names
  for name in ('per_category', 'confusion_sknet'):
    path = os.path.join(out, 'figures', f'{name}.png')
    assert os.path.getsize(path) > 20000, name
    with Image.open(path) as image:
      assert image.size[1] > 1200, name  # About 10 pixels or more per category.
  assert page.count('src="data:image/png;base64,') == len(figures)
  # No table lists every category: the longest is the best and worst ten (+ '...').
  longest = max(len(block.splitlines()) for block in re.split(r'\n\s*\n', markdown)
                if block.lstrip().startswith('|'))
  assert longest <= 2 + 21


def test_headline_table_shows_the_intervals(hundred_categories):
  run, _, markdown, _ = hundred_categories
  for model in run.models:
    metrics = model.metrics
    row = fixtures.table_row(markdown, f'**{model.name}**')
    assert row[2] == fixtures.interval(metrics['test_accuracy'], metrics['test_accuracy_ci95'],
                                       True)
    assert row[5] == fixtures.interval(metrics['map'], metrics['map_ci95'], False)
    assert re.fullmatch(r'\d+\.\d% \[\d+\.\d, \d+\.\d\]', row[1])  # Train accuracy.
  method = run.models[0].metrics['ci95_method']
  assert f'{method["resamples"]} resamples, seed {method["seed"]}' in markdown


def test_conclusions_carry_the_paired_difference(hundred_categories):
  run, _, markdown, _ = hundred_categories
  paired = run.comparison['paired_difference']['test_accuracy']
  assert paired['excludes_zero'] is True  # Far more skill.
  assert report_findings.lead(run, 'test_accuracy') == ('sknet', True)
  conclusions = markdown.split('## Conclusions')[1].split('\n## ')[0]
  low, high = paired['ci95']
  assert f'{paired["difference"] * 100:+.1f} points' in conclusions
  assert f'[{low * 100:+.1f}, {high * 100:+.1f}]' in conclusions
  assert f'over {paired["units"]} test drawings' in conclusions
  # ModelComparison's own table, kept in the report.
  assert fixtures.table_row(markdown, 'test top-1 accuracy')[-1] == 'yes'


def test_conclusion_without_a_real_difference(tmp_path):
  from components import model_comparison  # pylint: disable=g-import-not-at-top
  run = _synthetic_run(tmp_path, 10, first_skill=1.0, second_skill=1.0)
  run.models[1] = dataclasses.replace(run.models[0], name='skresnet')  # The same model twice.
  run.comparison = model_comparison.compare(run.models[0].metrics, run.models[1].metrics,
                                            run.models[0].per_query, run.models[1].per_query)
  for key in ('test_accuracy', 'map'):
    assert run.comparison['paired_difference'][key]['excludes_zero'] is False
    assert report_findings.lead(run, key) == (None, None)  # Equal values: no one leads.
  statements = report_findings.difference_statements(run)
  assert len(statements) == 2 and all('+0.0' in s or '+0.000' in s for s in statements)


def test_conclusion_from_the_models_own_intervals_without_a_paired_one(tmp_path):
  from components import embedding_evaluator  # pylint: disable=g-import-not-at-top
  run = _synthetic_run(tmp_path, 10, paired=False, first_skill=6.0, second_skill=0.0)
  first, second = (m.metrics['test_accuracy_ci95'] for m in run.models)
  assert first[0] > second[1]
  assert report_findings.lead(run, 'test_accuracy') == ('sknet', True)
  statement = report_findings.difference_statements(run)[0]
  assert f'[{first[0] * 100:.1f}, {first[1] * 100:.1f}]' in statement
  assert f'[{second[0] * 100:.1f}, {second[1] * 100:.1f}]' in statement
  # An older metrics.json (no *_ci95 keys): the value alone and no statement at all.
  for model in run.models:
    for key in embedding_evaluator.INTERVALS:
      del model.metrics[key]
  assert report_findings.difference_statements(run) == []
  row = report_tables.headline(run).row('**sknet**')
  assert row[2] == f'{run.models[0].metrics["test_accuracy"]:.1%}'
