"""The experiment report: built from a real smoke run's ML Metadata, and its text logic alone."""
import dataclasses
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
  expected = {'samples', 'learning_curves', 'wall_time', 'retrieval_sknet', 'retrieval_skresnet',
              'per_category', 'confusion_sknet', 'confusion_skresnet'}
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

    def cell(key, percent):  # The value, then its 95% interval.
      low, high = metrics[f'{key}_ci95']
      if percent:
        return f'{metrics[key]:.1%} [{low * 100:.1f}, {high * 100:.1f}]'
      return f'{metrics[key]:.3f} [{low:.3f}, {high:.3f}]'
    assert row[1] == cell('train_accuracy', True)
    assert row[2] == cell('test_accuracy', True)
    assert row[4] == cell('test_top5_accuracy', True)
    assert row[5] == cell('map', False)
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
  # Who leads, and no verdict on the margin without intervals.
  assert report._lead(run, 'test_accuracy') == ('sknet', None)
  assert report._lead(run, 'map') == ('skresnet', None)
  conclusions = ' '.join(report._conclusions(run))
  assert 'used 100 training drawings per category' in conclusions  # 100 < the spec's 1000.


def test_a_lead_counts_only_beyond_the_intervals():
  first, second = _model('sknet', 0.8, 0.5), _model('skresnet', 0.7, 0.45)
  first.metrics.update(test_accuracy_ci95=[0.75, 0.85], map_ci95=[0.44, 0.56])
  second.metrics.update(test_accuracy_ci95=[0.64, 0.74], map_ci95=[0.40, 0.50])
  run = _run(first, second)
  assert report._lead(run, 'test_accuracy') == ('sknet', True)
  assert report._lead(run, 'map') == ('sknet', False)  # Overlapping intervals.
  # A paired interval, when there is one, decides.
  run.comparison['paired_difference'] = {'map': {'excludes_zero': True}}
  assert report._lead(run, 'map') == ('sknet', True)


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


# ---- Intervals and 100 categories, from a made-up run (no pipeline) ---------------------------


def _png(rng, size=16):
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, size=(size, size)).astype(np.uint8)).save(buffer, 'PNG')
  return buffer.getvalue()


def _evaluated(name, categories, skill, seed, test_per_category=5):
  """A made-up model's ModelResults, its metrics from the Evaluator's own compute_metrics."""
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
  return report.ModelResults(name, metrics, {}, {'epochs': 1}, per_query, '')


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
  nodes = {'Trainer.sknet': results.NodeRun('Trainer.sknet', 'COMPLETE', {}, 0.0, 30.0),
           'ModelComparison': results.NodeRun(
               'ModelComparison', 'COMPLETE',
               {'comparison': [metadata_store_pb2.Artifact(uri=uri)]}, 30.0, 31.0)}
  rng = np.random.default_rng(2)
  drawings = {i: (c, _png(rng)) for i, c in zip(models[0].per_query['id'],
                                                models[0].per_query['category'])}
  return report.RunResults(
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
  run, out, markdown, page = hundred_categories
  figures = re.findall(r'!\[[^\]]*\]\((figures/[^)]+\.png)\)', markdown)
  names = {os.path.basename(f)[:-4] for f in figures}
  assert {'per_category', 'confusion_sknet', 'confusion_skresnet'} <= names
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for name in ('per_category', 'confusion_sknet'):
    path = os.path.join(out, 'figures', f'{name}.png')
    assert os.path.getsize(path) > 20000, name
    width, height = Image.open(path).size
    assert height > 1200, (name, height)  # About 10 pixels or more per category.
  assert page.count('src="data:image/png;base64,') == len(figures)
  # No table lists every category: the longest is the best and worst ten (+ '...').
  longest = max(len(block.splitlines()) for block in re.split(r'\n\s*\n', markdown)
                if block.lstrip().startswith('|'))
  assert longest <= 2 + 21
  assert 'Category names are left out' not in markdown  # 100 names fit.


def test_headline_table_shows_the_intervals(hundred_categories):
  run, _, markdown, _ = hundred_categories
  for model in run.models:
    metrics = model.metrics
    row = _table_row(markdown, f'**{model.name}**')
    low, high = metrics['test_accuracy_ci95']
    assert row[2] == f'{metrics["test_accuracy"]:.1%} [{low * 100:.1f}, {high * 100:.1f}]'
    low, high = metrics['map_ci95']
    assert row[5] == f'{metrics["map"]:.3f} [{low:.3f}, {high:.3f}]'
    assert re.fullmatch(r'\d+\.\d% \[\d+\.\d, \d+\.\d\]', row[1])  # Train accuracy.
  assert 'Brackets: 95% percentile bootstrap intervals (2000 resamples, seed 0)' in markdown


def test_conclusion_reads_the_paired_difference(hundred_categories):
  run, _, markdown, _ = hundred_categories
  paired = run.comparison['paired_difference']['test_accuracy']
  assert paired['excludes_zero'] is True  # Far more skill.
  conclusions = markdown.split('## Conclusions')[1]
  low, high = paired['ci95']
  assert (f'Test accuracy, sknet minus skresnet: {paired["difference"] * 100:+.1f} points, 95% '
          f'paired bootstrap interval [{low * 100:+.1f}, {high * 100:+.1f}] over 500 test '
          'drawings; the interval excludes 0, so sknet\'s lead is larger') in conclusions
  assert 'Retrieval mAP (L2), sknet minus skresnet: +' in conclusions
  assert 'Paired difference sknet - skresnet: 95% percentile bootstrap' in markdown
  assert _table_row(markdown, 'test top-1 accuracy')[-1] == 'yes'  # ModelComparison's table.


def test_conclusion_without_a_real_difference(tmp_path):
  run = _synthetic_run(tmp_path, 10, first_skill=1.0, second_skill=1.0)
  run.models[1] = dataclasses.replace(run.models[0], name='skresnet')  # The same model twice.
  from components import model_comparison  # pylint: disable=g-import-not-at-top
  run.comparison = model_comparison.compare(run.models[0].metrics, run.models[1].metrics,
                                            run.models[0].per_query, run.models[1].per_query)
  text = ' '.join(report._conclusions(run))  # pylint: disable=protected-access
  assert 'the interval includes 0, so this test set does not tell the two models apart on ' \
         'test accuracy' in text
  assert 'on retrieval mAP (L2)' in text and 'excludes 0' not in text


def test_conclusion_from_the_models_own_intervals_without_a_paired_one(tmp_path):
  run = _synthetic_run(tmp_path, 10, paired=False, first_skill=6.0, second_skill=0.0)
  text = ' '.join(report._conclusions(run))  # pylint: disable=protected-access
  first, second = (m.metrics['test_accuracy_ci95'] for m in run.models)
  assert first[0] > second[1]
  assert (f'On test accuracy, sknet\'s 95% interval [{first[0] * 100:.1f}, {first[1] * 100:.1f}] '
          'lies entirely above skresnet\'s') in text
  # An older metrics.json (no *_ci95 keys): the value alone and no statement at all.
  for model in run.models:
    for key in embedding_evaluator.INTERVALS:
      del model.metrics[key]
  assert report._difference_statements(run) == []  # pylint: disable=protected-access
  row = _table_row(report._headline_table(run), '**sknet**')  # pylint: disable=protected-access
  assert row[2] == f'{run.models[0].metrics["test_accuracy"]:.1%}'


def test_heatmap_labels_shrink_then_give_way_to_a_note():
  from pipeline import report_figures  # pylint: disable=g-import-not-at-top
  assert report_figures.heatmap_layout(10)['font'] == 9.0
  assert 4.0 <= report_figures.heatmap_layout(100)['font'] < 9.0
  assert report_figures.heatmap_layout(345)['font'] is None
  assert report_figures.heatmap_note(100) == ''
  assert 'left out at 345 categories' in report_figures.heatmap_note(345)


def test_one_category_order_best_first():
  from pipeline import report_figures  # pylint: disable=g-import-not-at-top
  first = _model('sknet', 0.5, 0.5)
  second = _model('skresnet', 0.5, 0.5)
  first.metrics['classification'] = {'test': {'per_class': {
      'a': {'accuracy': 0.2}, 'b': {'accuracy': 0.9}, 'c': {'accuracy': 0.5}}}}
  second.metrics['classification'] = {'test': {'per_class': {
      'a': {'accuracy': 0.4}, 'b': {'accuracy': 0.7}, 'c': {'accuracy': None}}}}
  first.metrics['retrieval'] = {'l2': {'per_category_ap': {'a': 0.3, 'b': 0.8, 'c': 0.6}}}
  # Mean accuracy: b 0.8, c 0.5 (one model), a 0.3.
  assert report_figures.category_order([first, second]) == ['b', 'c', 'a']


def test_the_sampling_table_is_summarised_beyond_20_categories():
  manifest = {'categories': {f'c{i:03d}': {'read': 100 + i, 'train': 10, 'test': 5}
                             for i in range(100)}}
  table = report._manifest_table(manifest)  # pylint: disable=protected-access
  assert len(table.splitlines()) == 2 + 3
  assert _table_row(table, 'all 100 (sum)')[1:] == [str(sum(100 + i for i in range(100))),
                                                     '1000', '500']
  assert _table_row(table, 'largest per category')[1] == '199'
  small = {'categories': {f'c{i}': {'read': 1} for i in range(5)}}
  table = report._manifest_table(small)  # pylint: disable=protected-access
  assert len(table.splitlines()) == 2 + 5


def test_run_summary_shows_the_intervals_and_tolerates_older_metrics():
  row = {'model': 'sknet', 'train_accuracy': 0.808, 'train_accuracy_ci95': [0.785, 0.83],
         'test_accuracy': 0.71, 'test_accuracy_ci95': [0.652, 0.763], 'map': 0.439,
         'map_ci95': [0.401, 0.478], 'chance_accuracy': 0.1, 'random_map': 0.113,
         'raw_pixels_map': 0.185, 'pushed': True, 'pushed_to': 'registry/sknet/1'}
  older = {'model': 'skresnet', 'train_accuracy': 0.613, 'test_accuracy': 0.56, 'map': 0.371,
           'chance_accuracy': 0.1, 'random_map': 0.113, 'raw_pixels_map': None,
           'pushed': False, 'pushed_to': ''}
  lines = results.format_table([row, older]).splitlines()
  assert '80.8% [78.5, 83.0]  71.0% [65.2, 76.3]  0.439 [0.401, 0.478]' in lines[2]
  assert lines[3].split()[:4] == ['skresnet', '61.3%', '56.0%', '0.371']


def _trained(name, training, **history):
  return report.ModelResults(name, _model(name, 0.5, 0.3).metrics, history, training, {}, '')


def test_training_budget_is_stated_from_settings_and_histories():
  budget = {'epochs': 20, 'time_budget_minutes': 35.0}
  run = _run(_trained('sknet', budget, epochs_reached=0.71, steps=2200, precision='mixed_bfloat16'),
             _trained('skresnet', budget, epochs_reached=0.43, steps=1350, precision='float32'))
  sentence = report._budget_sentence(run)
  assert '35 minutes' in sentence and 'sknet 0.71' in sentence and 'skresnet 0.43' in sentence
  assert 'different' not in sentence
  table = report._training_run_table(run)
  assert _table_row(table, 'training steps')[1:] == ['2,200', '1,350']
  assert _table_row(table, 'precision')[1:] == ['mixed_bfloat16', 'float32']
  unequal = _run(_trained('sknet', {'epochs': 3}), _trained('skresnet', {'epochs': 2}))
  assert 'different training budgets' in report._budget_sentence(unequal)
