"""The report's parts from a made-up run (no pipeline, no TensorFlow): the gathered data, the
tables, the statements and the templates, each checked against the values it was given."""
import base64
import re
import types

import numpy as np

from pipeline import report_category_figures
from pipeline import report_data
from pipeline import report_findings
from pipeline import report_render
from pipeline import report_tables
from tests import report_fixtures as fixtures


def _node(node_id, start, end, state='COMPLETE', outputs=None):
  return types.SimpleNamespace(node_id=node_id, state=state, outputs=outputs or {},
                               start_time=start, end_time=end, seconds=end - start)


def _model(name, test_accuracy, map_, train_accuracy=0.9, map_cosine=None, matrix=None,
           categories=3, embedding_dim=1024):
  metrics = {'train_accuracy': train_accuracy, 'test_accuracy': test_accuracy, 'map': map_,
             'chance_accuracy': 1 / categories, 'num_categories': categories,
             'embedding_dim': embedding_dim, 'train_examples': 30 * categories,
             'test_examples': 10 * categories, 'map_queries': 10 * categories,
             'floors': {'random_map': 0.33, 'raw_pixels_map': 0.4, 'raw_pixels_dim': 48 * 48},
             'thresholds': {'min_test_accuracy': 0.75, 'min_map': 0.2,
                            'not_worse_than_pushed': False},
             'blessing': {'checks': [
                 {'name': 'min_test_accuracy', 'passed': test_accuracy >= 0.75,
                  'value': test_accuracy, 'threshold': 0.75},
                 {'name': 'min_map', 'passed': True, 'value': map_, 'threshold': 0.2}]}}
  if map_cosine is not None:
    metrics['map_cosine'] = map_cosine
  if matrix is not None:
    metrics['classification'] = {'categories': ['a', 'b', 'c'],
                                 'test': {'confusion_matrix': matrix}}
  pushed = f'/registry/{name}/1' if test_accuracy >= 0.75 else ''
  return report_data.ModelResults(name, metrics, {}, {'epochs': 2, 'image_size': 48}, {}, pushed)


def _run(*models, nodes=None, image_size=48):
  sampling = {'num_categories': 3, 'train_per_category': 100, 'test_per_category': 10,
              'seed': 1, 'source': '/home/someone/data/quickdraw/simplified'}
  manifest = {'categories': {c: {'read': 200, 'train': 100, 'test': 10} for c in 'abc'}}
  return report_data.RunResults('p', 'r1', '/home/someone/out/metadata/p/metadata.sqlite',
                                nodes or {}, sampling, manifest, list(models), {}, '', {},
                                image_size)


def test_headline_table_is_the_metrics_and_the_floors():
  first = _model('sknet', 0.8, 0.5, map_cosine=0.52)
  first.metrics.update(test_accuracy_ci95=[0.75, 0.85], map_ci95=[0.44, 0.56])
  table = report_tables.headline(_run(first, _model('skresnet', 0.7, 0.45)))
  assert table.row('**sknet**') == ['**sknet**', '90.0%', '80.0% [75.0, 85.0]', 'n/a', 'n/a',
                                    '0.500 [0.440, 0.560]', 'n/a', '0.520', 'yes']
  assert table.row('**skresnet**')[2] == '70.0%'  # No interval recorded: the value alone.
  assert table.row('**skresnet**')[-1] == 'no'
  assert table.row('chance / random ranking')[1:3] == ['33.3%', '33.3%']
  assert table.row('raw 48x48 pixels (L2)')[5] == '0.400'


def test_confusion_pairs_are_the_largest_off_diagonal_cells():
  model = _model('sknet', 0.5, 0.5, matrix=[[5, 3, 0], [1, 6, 1], [0, 4, 4]])
  assert report_tables.confusion_pairs(model, 2) == [('c', 'b', 4, 8), ('a', 'b', 3, 8)]
  assert report_tables.confusions(model).rows[0] == ['c', 'b', '4', '8']


def test_per_category_table_keeps_the_best_and_worst_ten():
  model = _model('sknet', 0.5, 0.5)
  model.metrics['retrieval'] = {'l2': {'per_category_ap': {f'c{i:02d}': i / 100
                                                           for i in range(30)}}}
  table = report_tables.per_category(model)
  assert [row[0] for row in table.rows[:2]] == ['c29', 'c28']
  assert table.rows[10] == ['...', '', ''] and table.rows[-1][:2] == ['c00', '0.000']
  assert len(table.rows) == 21


def test_the_sampling_table_is_summarised_beyond_20_categories():
  manifest = {'categories': {f'c{i:03d}': {'read': 100 + i, 'train': 10, 'test': 5}
                             for i in range(100)}}
  table = report_tables.sampling(manifest)
  assert report_tables.sampling_summarised(manifest)
  assert len(table.rows) == 3
  assert table.row('all 100 (sum)')[1:] == [str(sum(100 + i for i in range(100))), '1000', '500']
  assert table.row('largest per category')[1] == '199'
  small = {'categories': {f'c{i}': {'read': 1} for i in range(5)}}
  assert len(report_tables.sampling(small).rows) == 5
  assert not report_tables.sampling_summarised(small)


def test_wall_time_table_is_the_executions_times():
  nodes = {'Trainer.sknet': _node('Trainer.sknet', 10.0, 40.4),
           'QuickDrawExampleGen': _node('QuickDrawExampleGen', 0.0, 9.0, 'CACHED')}
  table = report_tables.wall_time(_run(_model('sknet', 0.5, 0.5), nodes=nodes))
  assert [row[:3] for row in table.rows] == [['QuickDrawExampleGen', 'cached', '9'],
                                             ['Trainer.sknet', 'complete', '30'],
                                             ['**whole run**', '', '**40**']]
  assert 'sknet' in table.row('Trainer.sknet')[3]  # Its role names the model.


def _trained(name, training, **history):
  return report_data.ModelResults(name, _model(name, 0.5, 0.3).metrics, history, training, {},
                                  '')


def test_training_tables_and_budget_come_from_settings_and_histories():
  budget = {'epochs': 20, 'time_budget_minutes': 35.0}
  run = _run(_trained('sknet', budget, epochs_reached=0.71, steps=2200, precision='mixed_bfloat16'),
             _trained('skresnet', budget, epochs_reached=0.43, steps=1350, precision='float32'))
  table = report_tables.training_run(run)
  assert table.row('training steps')[1:] == ['2,200', '1,350']
  assert table.row('precision')[1:] == ['mixed_bfloat16', 'float32']
  assert table.row('epochs reached')[1:] == ['0.71', '0.43']
  assert report_tables.training_settings(run).row('epochs')[1:] == ['20', '20']
  sentence = report_findings.budget(run)
  assert '35 minutes' in sentence and 'sknet 0.71' in sentence and 'skresnet 0.43' in sentence
  unequal = _run(_trained('sknet', {'epochs': 3}), _trained('skresnet', {'epochs': 2}))
  assert 'sknet: 3 epochs; skresnet: 2 epochs' in report_findings.budget(unequal)


def test_a_lead_counts_only_beyond_the_intervals():
  first, second = _model('sknet', 0.8, 0.5), _model('skresnet', 0.7, 0.45)
  assert report_findings.lead(_run(first, second), 'test_accuracy') == ('sknet', None)
  first.metrics.update(test_accuracy_ci95=[0.75, 0.85], map_ci95=[0.44, 0.56])
  second.metrics.update(test_accuracy_ci95=[0.64, 0.74], map_ci95=[0.40, 0.50])
  run = _run(first, second)
  assert report_findings.lead(run, 'test_accuracy') == ('sknet', True)
  assert report_findings.lead(run, 'map') == ('sknet', False)  # Overlapping intervals.
  # A paired interval, when there is one, decides.
  run.comparison['paired_difference'] = {'map': {'excludes_zero': True}}
  assert report_findings.lead(run, 'map') == ('sknet', True)
  equal = _run(_model('sknet', 0.7, 0.5), _model('skresnet', 0.7, 0.5))
  assert report_findings.lead(equal, 'test_accuracy') == (None, None)


def test_statements_carry_the_runs_values():
  run = _run(_model('sknet', 0.8, 0.5, train_accuracy=0.99, map_cosine=0.6),
             _model('skresnet', 0.7, 0.6, train_accuracy=0.72))
  points = report_findings.discussion(run)
  accuracy = next(p for p in points if p.startswith('sknet is ahead of skresnet'))
  assert '80.0%' in accuracy and '70.0%' in accuracy
  gaps = {name: next(p for p in points if p.startswith(f'{name}: train accuracy'))
          for name in ('sknet', 'skresnet')}
  assert '+19.0 points' in gaps['sknet'] and '+2.0 points' in gaps['skresnet']
  assert '1.5x the random ranking (0.330)' in ' '.join(points)  # 0.5 / 0.33
  # Only what was measured: no top-5, no cosine for skresnet, no confusion matrix.
  assert not any('top-5' in p or 'confusions' in p for p in points)
  assert sum('cosine distance' in p for p in points) == 1
  # The push statement: the thresholds and the failed check, from the blessing section.
  push = report_findings.push_statement(run)
  assert 'sknet' in push.split('.')[0] and 'skresnet' not in push.split('.')[0]
  assert '75.0%' in push and '0.200' in push and '70.0% < 75.0%' in push


def test_the_scale_statement_follows_the_full_profile():
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  full = config_lib.PROFILES['full']
  small = ' '.join(report_findings.conclusions(_run(_model('sknet', 0.8, 0.5))))
  assert f'{full.train_per_category} drawings' in small and 'used 100 training' in small
  run = _run(_trained('sknet', {'epochs': 99}, epochs_reached=99.0))
  run.sampling['train_per_category'] = full.train_per_category
  assert not any('`full` profile' in p for p in report_findings.conclusions(run))


def test_the_page_is_derived_from_the_run_not_fixed_text():
  """A run unlike any profile: every size and count the page states is this run's."""
  models = [_model('netA', 0.8, 0.5, categories=7, embedding_dim=64),
            _model('netB', 0.6, 0.4, categories=7, embedding_dim=64)]
  run = _run(*models, nodes={'Trainer.netA': _node('Trainer.netA', 0.0, 12.0)}, image_size=48)
  text = report_render.render_markdown(run, {})
  for fixed in ('128', '1024', '345', 'sknet', 'skresnet', '/home/someone'):
    assert fixed not in text, fixed
  assert '48x48' in text and '64-d' in text and '2,304-d' in text and '1 / 7' in text
  assert 'netA' in fixtures.table_row(text, 'training setting')
  assert '![' not in text  # No figure drawn, none linked.


def test_the_page_leads_with_the_results_and_links_the_figures_drawn():
  run = _run(_model('sknet', 0.8, 0.5), _model('skresnet', 0.7, 0.45),
             nodes={'Trainer.sknet': _node('Trainer.sknet', 0.0, 12.0)})
  figures = {'pr_curves': 'figures/pr_curves.png', 'samples': 'figures/samples.png',
             'confusion_skresnet': 'figures/confusion_skresnet.png'}
  text = report_render.render_markdown(run, figures)
  assert sorted(fixtures.FIGURE_LINK.findall(text)) == sorted(figures.values())
  results_at = fixtures.line_of(text, '| **sknet** |')
  assert (results_at < fixtures.line_of(text, 'figures/pr_curves.png')
          < fixtures.line_of(text, '| Trainer.sknet |'))
  assert results_at < fixtures.line_of(text, '| training setting |')
  assert results_at < fixtures.line_of(text, 'figures/samples.png')
  # Every table is well formed: as many cells in each row as in its header.
  for block in re.split(r'\n\s*\n', text):
    lines = [line for line in block.splitlines() if line.startswith('|')]
    if lines:
      assert len({line.count('|') for line in lines}) == 1, block


def test_a_run_that_recorded_little_still_renders_what_it_did():
  """One model, a metrics.json without intervals, floors or per-category sections, no
  manifest, no Trainer history: the page shows the values there are and no empty parts."""
  model = report_data.ModelResults('sknet', {'train_accuracy': 0.6, 'test_accuracy': 0.5,
                                             'map': None}, {}, {}, {}, '')
  run = report_data.RunResults('p', 'r1', 'm.sqlite', {}, {}, {}, [model], {}, '', {}, 64)
  text = report_render.render_markdown(run, {})
  assert fixtures.table_row(text, '**sknet**')[1:3] == ['60.0%', '50.0%']
  assert fixtures.table_row(text, '**sknet**')[5] == 'n/a'
  assert 'random ranking scores' not in text and 'Brackets' not in text
  assert 'per category (test split)' not in text and 'training as it ran' not in text
  points = report_findings.discussion(run)  # Only the train-test gap is measured.
  assert len(points) == 1 and '+10.0 points' in points[0]


def test_the_html_embeds_each_figure_and_escapes_the_title(tmp_path):
  run = _run(_model('sknet', 0.8, 0.5))
  run.run_id = 'r<1>'
  (tmp_path / 'figures').mkdir()
  png = fixtures.png(np.random.default_rng(0))
  (tmp_path / 'figures' / 'samples.png').write_bytes(png)
  text, page = report_render.render(run, {'samples': 'figures/samples.png'}, str(tmp_path))
  assert fixtures.FIGURE_LINK.findall(text) == ['figures/samples.png']
  embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
  assert [base64.b64decode(e) for e in embedded] == [png]
  assert '<title>quickdraw-tfx run r&lt;1&gt;</title>' in page
  assert '<table>' in page and 'data-images' in page


def test_heatmap_labels_shrink_then_give_way_to_a_note():
  assert report_category_figures.heatmap_layout(10)['font'] == 9.0
  assert 4.0 <= report_category_figures.heatmap_layout(100)['font'] < 9.0
  assert report_category_figures.heatmap_layout(345)['font'] is None
  assert report_category_figures.heatmap_note(100) == ''
  assert '345' in report_category_figures.heatmap_note(345)


def test_one_category_order_best_first():
  first = _model('sknet', 0.5, 0.5)
  second = _model('skresnet', 0.5, 0.5)
  first.metrics['classification'] = {'test': {'per_class': {
      'a': {'accuracy': 0.2}, 'b': {'accuracy': 0.9}, 'c': {'accuracy': 0.5}}}}
  second.metrics['classification'] = {'test': {'per_class': {
      'a': {'accuracy': 0.4}, 'b': {'accuracy': 0.7}, 'c': {'accuracy': None}}}}
  first.metrics['retrieval'] = {'l2': {'per_category_ap': {'a': 0.3, 'b': 0.8, 'c': 0.6}}}
  # Mean accuracy: b 0.8, c 0.5 (one model), a 0.3.
  assert report_category_figures.category_order([first, second]) == ['b', 'c', 'a']


def test_retrieval_examples_take_one_query_per_category_and_its_recorded_neighbours():
  from pipeline import report_figures  # pylint: disable=g-import-not-at-top
  model = report_data.ModelResults('m', {}, {}, {}, {
      'category': np.array(['b', 'a', 'a', 'b']), 'id': np.array(['b/3', 'a/9', 'a/1', 'b/2']),
      'neighbors_l2': np.array([[3, 1, 2], [2, 0, 3], [1, 3, 0], [0, -1, -1]])}, '')
  # The first drawing by id of each category, categories in order; -1 pads are dropped.
  assert report_figures.retrieval_examples(model, queries=2, k=2) == [(2, [1, 3]), (3, [0])]


def test_run_summary_shows_the_intervals_and_tolerates_older_metrics():
  from pipeline import results  # pylint: disable=g-import-not-at-top
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


def test_gathered_sampling_is_the_manifest_header():
  manifest = {'source': 's', 'seed': 3, 'train_per_category': 4, 'categories': {'a': {}, 'b': {}},
              'totals': {'read': 9}}
  assert report_data.sampling(manifest) == {'source': 's', 'seed': 3, 'train_per_category': 4,
                                            'num_categories': 2}
  assert report_data.get_path({'a': {'b': 1}}, 'a.b') == 1
  assert report_data.get_path({'a': {'b': 1}}, 'a.c', 'none') == 'none'


def test_the_comparison_table_is_named_below_the_output_folder_however_the_run_named_it(
    tmp_path, monkeypatch):
  """The pipeline records a relative URI when its output folder was given relatively; the
  report names the table below that folder either way."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  below = 'pipeline_root/p/ModelComparison/comparison/12'
  for uri in (f'outputs/{below}', str(tmp_path / 'outputs' / below)):
    nodes = {'ModelComparison': _node('ModelComparison', 0.0, 1.0, outputs={
        'comparison': [metadata_store_pb2.Artifact(uri=uri)]})}
    run = report_data.RunResults('p', 'r1', 'outputs/metadata/p/metadata.sqlite', nodes, {}, {},
                                 [_model('sknet', 0.8, 0.5)], {}, '# Comparison\n\nsummary\n',
                                 {}, 48)
    text = report_render.render_markdown(run, {})
    assert f'`{below}/comparison.md` in the run\'s output directory' in text, uri
