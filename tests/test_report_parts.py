"""The report's parts from a made-up run (no pipeline, no TensorFlow): the gathered data, the
tables, the statements and the templates, each checked against the values it was given."""
import base64
import re

import numpy as np

from models import architectures
from pipeline import config as config_lib
from pipeline import report_category_figures
from pipeline import report_conclusions
from pipeline import report_data
from pipeline import report_findings
from pipeline import report_render
from pipeline import report_tables
from tests import report_fixtures as fixtures
from tests.report_fixtures import scored_model, small_run, timed_node


SECTIONS = ('Abstract', '1. Introduction', '2. Development', '3. Results and discussion',
            '4. Conclusions', '5. Deliverables', 'Appendix')


def test_classification_and_retrieval_tables_are_the_metrics_and_the_floors():
  first = scored_model('sknet', 0.8, 0.5, map_cosine=0.52)
  first.metrics.update(test_accuracy_ci95=[0.75, 0.85], map_ci95=[0.44, 0.56])
  run = small_run(first, scored_model('skresnet', 0.7, 0.45))
  table = report_tables.classification(run)
  assert table.row('**skNet**') == ['**skNet**', '90.0%', '80.0% [75.0, 85.0]', 'n/a', 'n/a',
                                    '+10.0 pt']
  assert table.row('**skResNet**')[2] == '70.0%'  # No interval recorded: the value alone.
  assert table.row('chance')[1:3] == ['33.3%', '33.3%']
  table = report_tables.retrieval(run)
  assert table.row('**skNet**') == ['**skNet**', '0.500 [0.440, 0.560]', 'n/a', '0.520']
  assert table.row('random ranking')[1] == '0.330'
  assert table.row('raw 48x48 pixels (L2)')[1] == '0.400'
  # Without a raw-pixel floor, no row for it.
  del first.metrics['floors']['raw_pixels_map']
  assert report_tables.retrieval(small_run(first)).row('raw 48x48 pixels (L2)') is None


def test_the_paired_table_is_modelcomparisons_difference():
  run = small_run(scored_model('sknet', 0.8, 0.5), scored_model('skresnet', 0.7, 0.45))
  assert report_tables.paired(run, 'map') is None  # No ModelComparison: no table.
  run.comparison = {'models': ['sknet', 'skresnet'], 'paired_difference': {'map': {
      'first': 0.5, 'second': 0.45, 'difference': 0.05, 'ci95': [0.02, 0.08],
      'excludes_zero': True, 'units': 30}}}
  assert report_tables.paired(run, 'map').rows == [
      ['mAP (L2, fc_1)', '0.500', '0.450', '+0.050', '[+0.020, +0.080]', 'yes']]


def test_confusion_pairs_are_the_largest_off_diagonal_cells():
  model = scored_model('sknet', 0.5, 0.5, matrix=[[5, 3, 0], [1, 6, 1], [0, 4, 4]])
  assert report_tables.confusion_pairs(model, 2) == [('c', 'b', 4, 8), ('a', 'b', 3, 8)]
  assert report_tables.confusions(model).rows[0] == ['c', 'b', '4', '8']


def test_per_category_table_keeps_the_best_and_worst_ten():
  model = scored_model('sknet', 0.5, 0.5)
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
  nodes = {'Trainer.sknet': timed_node('Trainer.sknet', 10.0, 40.4),
           'QuickDrawExampleGen': timed_node('QuickDrawExampleGen', 0.0, 9.0, 'CACHED')}
  table = report_tables.wall_time(small_run(scored_model('sknet', 0.5, 0.5), nodes=nodes))
  assert [row[:3] for row in table.rows] == [['QuickDrawExampleGen', 'cached', '9'],
                                             ['Trainer.sknet', 'complete', '30'],
                                             ['**whole run**', '', '**40**']]
  assert 'fits skNet' in table.row('Trainer.sknet')[3]  # Its role names the model.


def test_a_model_is_titled_as_the_specification_writes_it():
  assert architectures.title('sknet') == 'skNet'
  assert architectures.title('skresnet') == 'skResNet'
  assert architectures.title('netA') == 'netA'  # Unknown: its identifier as it is.
  assert set(architectures.TITLES) == set(config_lib.MODEL_NAMES)
  model = scored_model('skresnet', 0.5, 0.5)
  assert (model.name, model.title) == ('skresnet', 'skResNet')


def test_a_lead_counts_only_beyond_the_intervals():
  first, second = scored_model('sknet', 0.8, 0.5), scored_model('skresnet', 0.7, 0.45)
  assert report_findings.lead(small_run(first, second), 'test_accuracy') == ('sknet', None)
  first.metrics.update(test_accuracy_ci95=[0.75, 0.85], map_ci95=[0.44, 0.56])
  second.metrics.update(test_accuracy_ci95=[0.64, 0.74], map_ci95=[0.40, 0.50])
  run = small_run(first, second)
  assert report_findings.lead(run, 'test_accuracy') == ('sknet', True)
  assert report_findings.lead(run, 'map') == ('sknet', False)  # Overlapping intervals.
  # A paired interval, when there is one, decides.
  run.comparison['paired_difference'] = {'map': {'excludes_zero': True}}
  assert report_findings.lead(run, 'map') == ('sknet', True)
  equal = small_run(scored_model('sknet', 0.7, 0.5), scored_model('skresnet', 0.7, 0.5))
  assert report_findings.lead(equal, 'test_accuracy') == (None, None)


def test_statements_carry_the_runs_values():
  run = small_run(scored_model('sknet', 0.8, 0.5, train_accuracy=0.99, map_cosine=0.6),
             scored_model('skresnet', 0.7, 0.6, train_accuracy=0.72))
  classification = report_findings.classification(run)
  accuracy = next(p for p in classification if p.startswith('skNet is ahead of skResNet'))
  assert '80.0%' in accuracy and '70.0%' in accuracy
  training = report_findings.training_behaviour(run)
  gaps = {name: next(p for p in training if p.startswith(f'{name} recognises'))
          for name in ('skNet', 'skResNet')}
  assert '+19.0 points' in gaps['skNet'] and '+2.0 points' in gaps['skResNet']
  retrieval = report_findings.retrieval(run)
  assert '1.5x the random ranking (0.330)' in ' '.join(retrieval)  # 0.5 / 0.33
  # Only what was measured: no top-5, no cosine for skresnet, no confusion matrix.
  points = classification + retrieval + report_findings.per_category(run)
  assert not any('top-5' in p or 'confusions' in p for p in points)
  assert sum('cosine distance' in p for p in points) == 1
  # The push statement: the thresholds and the failed check, from the blessing section.
  push = report_findings.push_statement(run)
  assert 'skNet' in push.split('.')[0] and 'skResNet' not in push.split('.')[0]
  assert '75.0%' in push and '0.200' in push and '70.0% < 75.0%' in push


def test_conclusions_say_what_test_size_would_resolve_a_difference():
  run = small_run(scored_model('sknet', 0.8, 0.5), scored_model('skresnet', 0.78, 0.45))
  run.comparison = {'models': ['sknet', 'skresnet'], 'paired_difference': {'test_accuracy': {
      'difference': 0.02, 'ci95': [-0.02, 0.06], 'excludes_zero': False, 'units': 300}}}
  # Half-width 0.04 over a difference of 0.02: (0.04 / 0.02)^2 = 4x the 300 drawings.
  statement = next(p for p in report_conclusions.what_would_change_it(run) if 'classification'
                   in p)
  assert '1,200 drawings (4.0x this one)' in statement
  recommendation = report_conclusions.recommendations(run)[0]
  assert recommendation == ('For classification, neither model is ahead by more than the '
                            'uncertainty of the test set (skNet leads inside its interval).')
  # With the exported models read, the cheaper one is named, by their FLOPs.
  run.models[0].architecture = {'forward_flops': 8e9}
  run.models[1].architecture = {'forward_flops': 4e9}
  assert ('skResNet needs 50% fewer FLOPs per image than skNet (4.00 against 8.00 GFLOPs)'
          in report_conclusions.recommendations(run)[0])
  assert report_conclusions.verdict(run).startswith(
      'Verdict: the two models do not differ measurably at classification (skNet minus '
      'skResNet: +2.0 points, 95% interval [-2.0, +6.0])')


def test_the_page_is_derived_from_the_run_not_fixed_text():
  """A run unlike any profile: every size and count the page states is this run's."""
  models = [scored_model('netA', 0.8, 0.5, categories=7, embedding_dim=64),
            scored_model('netB', 0.6, 0.4, categories=7, embedding_dim=64)]
  run = small_run(*models, nodes={'Trainer.netA': timed_node('Trainer.netA', 0.0, 12.0)},
                  image_size=48)
  text = report_render.render_markdown(run, {})
  for fixed in ('128', '1024', '345', 'sknet', 'skresnet', '/home/someone'):
    assert fixed not in text, fixed
  assert '48x48' in text and '64-d' in text and '2,304-d' in text and '1 / 7' in text
  assert '7 categories' in fixtures.section(text, '## 1. Introduction')
  assert 'netA' in fixtures.table_row(text, 'training setting')
  assert '![' not in text  # No figure drawn, none linked.


def test_the_page_follows_the_scheme_and_links_the_figures_drawn():
  run = small_run(scored_model('sknet', 0.8, 0.5), scored_model('skresnet', 0.7, 0.45),
             nodes={'Trainer.sknet': timed_node('Trainer.sknet', 0.0, 12.0)})
  figures = {'pr_curves': 'figures/pr_curves.png', 'samples': 'figures/samples.png',
             'confusion_skresnet': 'figures/confusion_skresnet.png',
             'pipeline_dag': 'figures/pipeline_dag.png'}
  text = report_render.render_markdown(run, figures)
  assert sorted(fixtures.FIGURE_LINK.findall(text)) == sorted(figures.values())
  assert fixtures.headings(text) == list(SECTIONS)
  # Each figure sits in the section whose question it answers.
  for heading, figure in (('### 2.1', 'pipeline_dag'), ('### 2.2', 'samples'),
                          ('### 3.2', 'pr_curves'), ('### 3.3', 'confusion_skresnet')):
    assert f'figures/{figure}.png' in fixtures.section(text, heading), figure
  # The results come first all the same: the Abstract states both models' numbers.
  abstract = fixtures.section(text, '## Abstract')
  assert all(value in abstract for value in ('80.0%', '0.500', '70.0%', '0.450'))
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
  assert fixtures.headings(text) == list(SECTIONS)
  assert fixtures.table_row(text, '**skNet**')[1:3] == ['60.0%', '50.0%']
  retrieval = fixtures.section(text, '### 3.2')
  assert fixtures.table_row(retrieval, '**skNet**')[1] == 'n/a'
  assert 'random ranking' not in text and 'Brackets' not in text
  assert 'per category (test split)' not in text and '| training |' not in text
  assert '| layer |' not in text  # No exported model read: no layer table.
  points = [p for question in (report_findings.classification, report_findings.retrieval,
                               report_findings.per_category, report_findings.training_behaviour)
            for p in question(run)]  # Only the train-test gap is measured.
  assert len(points) == 1 and '+10.0 points' in points[0]


def test_the_html_embeds_each_figure_and_escapes_the_title(tmp_path):
  run = small_run(scored_model('sknet', 0.8, 0.5))
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
  first = scored_model('sknet', 0.5, 0.5)
  second = scored_model('skresnet', 0.5, 0.5)
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
  # With the categories ranked (easiest first), the queries follow the ranking.
  assert report_figures.retrieval_examples(model, queries=2, k=1, order=['b', 'a']) == [
      (3, [0]), (2, [1])]
  spread = report_data.ModelResults('m', {}, {}, {}, {
      'category': np.array(list('abcdefg')), 'id': np.array(list('abcdefg')),
      'neighbors_l2': np.zeros((7, 1), dtype=int)}, '')
  # Three of seven: the easiest, the middle one and the hardest.
  assert [q for q, _ in report_figures.retrieval_examples(spread, queries=3, k=1,
                                                          order=list('gfedcba'))] == [6, 3, 0]


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
    nodes = {'ModelComparison': timed_node('ModelComparison', 0.0, 1.0, outputs={
        'comparison': [metadata_store_pb2.Artifact(uri=uri)]})}
    run = report_data.RunResults('p', 'r1', 'outputs/metadata/p/metadata.sqlite', nodes, {}, {},
                                 [scored_model('sknet', 0.8, 0.5)], {}, '# Comparison\n\nsummary\n',
                                 {}, 48)
    text = report_render.render_markdown(run, {})
    assert f'`{below}/comparison.md` in the run\'s output directory' in text, uri


def test_the_training_curve_is_placed_on_the_images_trained_on():
  from pipeline import report_figures

  epochs = {'loss': [2.0, 1.0], 'accuracy': [0.3, 0.6], 'learning_rate': [2e-4, 0.0],
            'val_loss': [2.2, 1.4], 'val_accuracy': [0.25, 0.5]}
  fine = {'step': [10, 20, 30], 'images': [320, 640, 960], 'loss': [3.0, 2.0, 1.5],
          'accuracy': [0.1, 0.3, 0.5], 'learning_rate': [1e-4, 2e-4, 1e-4]}

  def model(history):
    return report_data.ModelResults('sknet', {}, history, {}, {}, '')

  # A recorded curve wins; validation stays at its epoch ends (500 drawings an epoch).
  curve = report_figures._training_curve(model({'history': epochs, 'curve': fine,
                                                'training_examples': 500}))
  assert curve['images'] == [320, 640, 960] and curve['loss'] == [3.0, 2.0, 1.5]
  assert curve['val_loss'] == [2.2, 1.4] and curve['val_loss_images'] == [500, 1000]
  # Without one (a run recorded before it, or a one-point curve): the epoch rows.
  for history in ({'history': epochs, 'training_examples': 500},
                  {'history': epochs, 'training_examples': 500,
                   'curve': {'images': [320], 'loss': [3.0]}}):
    curve = report_figures._training_curve(model(history))
    assert curve['images'] == [500, 1000] and curve['accuracy'] == [0.3, 0.6]
    assert curve['learning_rate'] == [2e-4, 0.0]
  # A budget that ended inside the second epoch: its row is where training stopped.
  curve = report_figures._training_curve(model({'history': epochs, 'training_examples': 500,
                                                'images_seen': 740}))
  assert curve['images'] == [500, 740] and curve['val_accuracy_images'] == [500, 740]
  assert report_figures._training_curve(model({})) == {}
