"""The report of a made-up run whose metrics come from the Evaluator's own compute_metrics:
100 categories as figures rather than tables, and the 95% intervals in the tables and
conclusions (no pipeline)."""
import dataclasses
import os
import re

import pytest

from pipeline import report
from pipeline import report_findings
from pipeline import report_tables
from tests import report_fixtures as fixtures


@pytest.fixture(scope='module')
def hundred_categories(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('hundred')
  run = fixtures.synthetic_run(tmp_path, 100)
  out = str(tmp_path / 'report')
  md_path, html_path = report.write_report(run, out, pdf=False)
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


def test_results_tables_show_the_intervals(hundred_categories):
  run, _, markdown, _ = hundred_categories
  classification = fixtures.section(markdown, '### 3.1')
  retrieval = fixtures.section(markdown, '### 3.2')
  for model in run.models:
    metrics = model.metrics
    row = fixtures.table_row(classification, f'**{model.title}**')
    assert row[2] == fixtures.interval(metrics['test_accuracy'], metrics['test_accuracy_ci95'],
                                       True)
    assert re.fullmatch(r'\d+\.\d% \[\d+\.\d, \d+\.\d\]', row[1])  # Train accuracy.
    row = fixtures.table_row(retrieval, f'**{model.title}**')
    assert row[1] == fixtures.interval(metrics['map'], metrics['map_ci95'], False)
  method = run.models[0].metrics['ci95_method']
  assert f'{method["resamples"]} resamples, seed {method["seed"]}' in markdown


def test_results_and_verdict_carry_the_paired_difference(hundred_categories):
  run, _, markdown, _ = hundred_categories
  paired = run.comparison['paired_difference']['test_accuracy']
  assert paired['excludes_zero'] is True  # Far more skill.
  assert report_findings.lead(run, 'test_accuracy') == ('sknet', True)
  low, high = paired['ci95']
  for section in (fixtures.section(markdown, '### 3.1'), fixtures.section(markdown, '## Abstract')):
    assert f'{paired["difference"] * 100:+.1f} points' in section
    assert f'[{low * 100:+.1f}, {high * 100:+.1f}]' in section
  classification = fixtures.section(markdown, '### 3.1')
  assert f'over {paired["units"]} test drawings' in classification
  assert fixtures.table_row(classification, 'test top-1 accuracy')[-1] == 'yes'
  conclusions = fixtures.section(markdown, '## 4. Conclusions')
  assert 'skNet is the better model for both classification and similarity search' in conclusions


def test_conclusion_without_a_real_difference(tmp_path):
  from components.model_comparison import executor as comparison_executor  # pylint: disable=g-import-not-at-top
  run = fixtures.synthetic_run(tmp_path, 10, first_skill=1.0, second_skill=1.0)
  run.models[1] = dataclasses.replace(run.models[0], name='skresnet')  # The same model twice.
  run.comparison = comparison_executor.compare(run.models[0].metrics, run.models[1].metrics,
                                            run.models[0].per_query, run.models[1].per_query)
  for key in ('test_accuracy', 'map'):
    assert run.comparison['paired_difference'][key]['excludes_zero'] is False
    assert report_findings.lead(run, key) == (None, None)  # Equal values: no one leads.
  statements = report_findings.difference_statements(run)
  assert len(statements) == 2 and all('+0.0' in s or '+0.000' in s for s in statements)


def test_conclusion_from_the_models_own_intervals_without_a_paired_one(tmp_path):
  from components.evaluator import outputs as evaluation_outputs  # pylint: disable=g-import-not-at-top
  run = fixtures.synthetic_run(tmp_path, 10, paired=False, first_skill=6.0, second_skill=0.0)
  first, second = (m.metrics['test_accuracy_ci95'] for m in run.models)
  assert first[0] > second[1]
  assert report_findings.lead(run, 'test_accuracy') == ('sknet', True)
  statement = report_findings.difference_statements(run)[0]
  assert f'[{first[0] * 100:.1f}, {first[1] * 100:.1f}]' in statement
  assert f'[{second[0] * 100:.1f}, {second[1] * 100:.1f}]' in statement
  # An older metrics.json (no *_ci95 keys): the value alone and no statement at all.
  for model in run.models:
    for key in evaluation_outputs.INTERVALS:
      del model.metrics[key]
  assert report_findings.difference_statements(run) == []
  row = report_tables.classification(run).row('**skNet**')
  assert row[2] == f'{run.models[0].metrics["test_accuracy"]:.1%}'
