"""The experiment report: built from a real smoke run's ML Metadata, and its text logic alone."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from components import embedding_evaluator
from pipeline import cli
from pipeline import report
from pipeline import results


@pytest.fixture(scope='module')
def smoke_report(smoke_run, tmp_path_factory):
  config, first, _ = smoke_run
  out = str(tmp_path_factory.mktemp('report'))
  md_path, html_path = report.build(config, first, out)
  with open(md_path) as f:
    markdown = f.read()
  with open(html_path) as f:
    page = f.read()
  return config, first, out, markdown, page


def _table_row(markdown: str, first_cell: str):
  for line in markdown.splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if cells and cells[0] == first_cell:
      return cells
  raise AssertionError(f'no table row starting with {first_cell!r}')


def test_report_has_every_section_and_figure(smoke_report):
  _, run_id, out, markdown, page = smoke_report
  for section in ('Abstract', 'Introduction', 'Development', 'Results and discussion',
                  'Conclusions'):
    assert f'## {section}' in markdown
  assert run_id in markdown
  figures = re.findall(r'!\[[^\]]*\]\((figures/[^)]+\.png)\)', markdown)
  expected = {'samples', 'learning_curves', 'wall_time', 'retrieval_sknet', 'retrieval_skresnet'}
  assert expected <= {os.path.basename(f)[:-4] for f in figures}
  for figure in figures:
    assert os.path.getsize(os.path.join(out, figure)) > 5000, figure  # A real picture.
  # The HTML stands alone: every figure embedded, no reference to a file beside it.
  assert page.count('src="data:image/png;base64,') == len(figures)
  assert 'src="figures/' not in page


def test_report_numbers_equal_the_evaluators_metrics(smoke_report):
  config, run_id, _, markdown, _ = smoke_report
  nodes = results.node_runs(results.open_store(config.metadata_path), config.pipeline_name,
                            run_id)
  for model in config.models:
    metrics = embedding_evaluator.read_metrics(
        nodes[f'EmbeddingEvaluator.{model}'].outputs['evaluation'][0].uri)
    row = _table_row(markdown, f'**{model}**')
    assert row[1] == f'{metrics["train_accuracy"]:.1%}'
    assert row[2] == f'{metrics["test_accuracy"]:.1%}'
    assert row[5] == f'{metrics["map"]:.3f}'
    if 'test_top5_accuracy' in metrics:
      assert row[4] == f'{metrics["test_top5_accuracy"]:.1%}'
    assert f'{model} reached {metrics["test_accuracy"]:.1%} test accuracy' in markdown
  # Wall times are the executions' own, as ML Metadata recorded them.
  trainer = nodes['Trainer.sknet']
  assert _table_row(markdown, 'Trainer.sknet')[2] == f'{trainer.seconds:.0f}'
  assert trainer.seconds > 1


def test_report_subcommand_regenerates_a_past_run(smoke_report, tmp_path, capsys):
  config, run_id, _, _, _ = smoke_report
  out = tmp_path / 'again'
  code = cli.main(['report', '--profile', 'smoke', '--output-dir', config.output_dir,
                   '--run-id', run_id, '--out', str(out)])
  assert code == 0
  assert str(out / report.REPORT_HTML) in capsys.readouterr().out
  assert (out / report.REPORT_MD).read_text().count('![') >= 5


def test_report_of_a_missing_run_is_a_clear_error(smoke_report, tmp_path, capsys):
  config = smoke_report[0]
  assert cli.main(['report', '--profile', 'smoke', '--output-dir', config.output_dir,
                   '--run-id', 'no-such-run']) == 1
  assert 'no pipeline run' in capsys.readouterr().err
  assert cli.main(['report', '--profile', 'smoke', '--output-dir', str(tmp_path)]) == 1
  assert 'run the pipeline first' in capsys.readouterr().err


@pytest.mark.skipif(not shutil.which('chromium'), reason='Debian\'s chromium is not installed '
                    '(.ci/run installs it when it can)')
def test_report_renders_in_a_real_browser_with_every_image_loaded(smoke_report, tmp_path):
  _, _, out, markdown, _ = smoke_report
  dom = subprocess.run(
      ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=10000',
       f'--user-data-dir={tmp_path}', '--dump-dom',
       'file://' + os.path.abspath(os.path.join(out, report.REPORT_HTML))],
      capture_output=True, text=True, timeout=120, check=True).stdout
  figures = len(re.findall(r'!\[[^\]]*\]\(figures/', markdown))
  assert f'data-images="{figures}/{figures}"' in dom


# ---- The text, from made-up results (no pipeline) --------------------------------------------


def _model(name, test_accuracy, map_, train_accuracy=0.9, map_cosine=None, matrix=None):
  metrics = {'train_accuracy': train_accuracy, 'test_accuracy': test_accuracy, 'map': map_,
             'chance_accuracy': 1 / 3, 'floors': {'random_map': 0.33, 'raw_pixels_map': 0.4}}
  if map_cosine is not None:
    metrics['map_cosine'] = map_cosine
  if matrix is not None:
    metrics['classification'] = {'categories': ['a', 'b', 'c'],
                                 'test': {'confusion_matrix': matrix}}
  return report.ModelResults(name, metrics, {}, {'epochs': 2}, {}, '/registry/x/1')


def _run(*models):
  return report.RunResults('p', 'r1', 'm.sqlite', {}, {'num_categories': 3,
                           'train_per_category': 100, 'test_per_category': 10, 'seed': 1},
                           {}, list(models), {}, '', {}, 128)


def test_discussion_states_only_what_was_measured():
  run = _run(_model('sknet', 0.8, 0.5), _model('skresnet', 0.7, 0.6))
  text = '\n'.join(report._discussion(run))
  assert 'sknet is ahead of skresnet on test accuracy: 80.0% against 70.0%' in text
  assert 'skresnet is ahead of sknet on retrieval mAP (L2): 0.600 against 0.500' in text
  assert 'cosine' not in text and 'top-5' not in text and 'confusions' not in text
  conclusions = ' '.join(report._conclusions(run))
  assert 'sknet classifies better' in conclusions
  assert 'skresnet gives the better embeddings' in conclusions
  assert 'less than the specification' in conclusions  # 100 < 1000 drawings per category.


def test_equal_values_give_no_winner_and_overfitting_is_named():
  run = _run(_model('sknet', 0.7, 0.5, train_accuracy=0.99), _model('skresnet', 0.7, 0.5))
  text = '\n'.join(report._discussion(run))
  assert 'ahead' not in text
  assert 'sknet: train accuracy 99.0%, test 70.0%, a gap that points to overfitting' in text


def test_confusion_pairs_are_the_largest_off_diagonal_cells():
  model = _model('sknet', 0.5, 0.5, matrix=[[5, 3, 0], [1, 6, 1], [0, 4, 4]])
  assert report.confusion_pairs(model, 2) == [('c', 'b', 4, 8), ('a', 'b', 3, 8)]


def test_retrieval_examples_take_one_query_per_category_and_its_recorded_neighbours():
  model = report.ModelResults('m', {}, {}, {}, {
      'category': np.array(['b', 'a', 'a', 'b']), 'id': np.array(['b/3', 'a/9', 'a/1', 'b/2']),
      'neighbors_l2': np.array([[3, 1, 2], [2, 0, 3], [1, 3, 0], [0, -1, -1]])}, '')
  # The first drawing by id of each category, categories in order; -1 pads are dropped.
  assert report.retrieval_examples(model, queries=2, k=2) == [(2, [1, 3]), (3, [0])]
