"""The findings and conclusions that weigh evidence: a lead inside overlapping intervals,
cosine against L2 paired over the same queries, whether the residual design paid off, the
Abstract's budget and the settings that applied."""
import numpy as np
import pytest

from pipeline import report_conclusions
from pipeline import report_distances
from pipeline import report_findings
from pipeline import report_tables
from tests.report_fixtures import scored_model, small_run, trained_model


def _paired(difference, low, high):
  return {'difference': difference, 'ci95': [low, high], 'excludes_zero': low > 0 or high < 0,
          'units': 300, 'first': None, 'second': None}


def _comparison(accuracy, map_):
  return {'models': ['sknet', 'skresnet'],
          'paired_difference': {'test_accuracy': accuracy, 'map': map_}}


def _per_query(ap_l2, ap_cosine):
  n = len(ap_l2)
  return {'id': np.array([f'q{i:04d}' for i in range(n)]),
          'category': np.array(['a', 'b', 'c'] * (n // 3)),
          'predicted': np.array(['a', 'b', 'c'] * (n // 3)), 'ap_l2': np.asarray(ap_l2),
          'ap_cosine': np.asarray(ap_cosine)}


def test_a_lead_inside_overlapping_intervals_is_not_a_finding():
  first, second = scored_model('sknet', 0.74, 0.48), scored_model('skresnet', 0.75, 0.46)
  first.metrics.update(test_top5_accuracy=0.990, test_top5_accuracy_ci95=[0.977, 1.0])
  second.metrics.update(test_top5_accuracy=0.977, test_top5_accuracy_ci95=[0.960, 0.990])
  points = report_findings.classification(small_run(first, second))
  top5, = [p for p in points if 'top-5' in p]
  assert top5.startswith('skNet is ahead of skResNet on top-5 test accuracy: 99.0% against 97.7%')
  assert 'separate 95% intervals overlap, which does not settle it' in top5
  second.metrics['test_top5_accuracy_ci95'] = [0.960, 0.970]
  top5, = [p for p in report_findings.classification(small_run(first, second)) if 'top-5' in p]
  assert 'separate 95% intervals do not even overlap' in top5
  # P@10 has no interval: said so, not passed off as a finding.
  first.metrics['retrieval'] = {'l2': {'precision_at_k': {'10': 0.61}}}
  second.metrics['retrieval'] = {'l2': {'precision_at_k': {'10': 0.59}}}
  p10, = [p for p in report_findings.retrieval(small_run(first, second)) if 'precision at 10' in p]
  assert p10.endswith('0.610 against 0.590 (no interval recorded).')
  # Chance once, for both models: 0.74 / (1/3) and 0.75 / (1/3).
  chance, = [p for p in points if p.startswith('Chance')]
  assert 'skNet is right 2.2x as often, skResNet is right 2.2x as often' in chance


def test_cosine_against_l2_is_paired_over_each_models_queries():
  rng = np.random.default_rng(0)
  l2 = rng.uniform(0.2, 0.8, size=300)
  first, second = scored_model('sknet', 0.74, 0.5), scored_model('skresnet', 0.75, 0.46)
  first.per_query = _per_query(l2, l2 + 0.05 + rng.normal(0, 0.01, 300))  # Cosine better.
  second.per_query = _per_query(l2 - 0.04, l2 - 0.04 + rng.normal(0, 0.01, 300))  # Same.
  # L2 says sknet retrieves better (+0.04); under cosine sknet leads by about 0.09.
  run = small_run(first, second)
  run.comparison = _comparison(_paired(-0.01, -0.04, 0.02), _paired(0.04, 0.03, 0.05))
  points = report_distances.distances(run)
  assert points[0].startswith('Cosine distance (each embedding\'s length ignored) minus L2')
  assert 'skNet +0.050 [' in points[0] and '], cosine better' in points[0]
  assert 'skResNet +0.000 [' in points[0] and 'no measurable difference' in points[0]
  assert points[1].startswith('Under cosine distance, skNet minus skResNet is +0.090')
  assert points[1].endswith('the same verdict as with L2.')
  # Under cosine the two models' APs are about the same: an interval that includes 0
  # separates nothing, and reverses nothing.
  second.per_query = _per_query(l2 - 0.04, l2 + 0.05 + rng.normal(0, 0.01, 300))
  verdict = report_distances.distances(run)[1]
  assert verdict.endswith('the same direction as with L2, but under cosine this test set does '
                          'not separate the models (skNet\'s lead under L2 exceeds its interval).')
  # Cosine clearly the other way round: the verdict depends on the distance.
  second.per_query = _per_query(l2 - 0.04, l2 + 0.1 + rng.normal(0, 0.01, 300))
  assert report_distances.distances(run)[1].endswith('depends on the distance the search uses.')
  # L2 does not separate them, cosine does.
  run.comparison = _comparison(_paired(-0.01, -0.04, 0.02), _paired(0.01, -0.01, 0.03))
  assert report_distances.distances(run)[1].endswith(
      'skResNet is ahead by more than the uncertainty under cosine, though not under L2.')
  # Queries without relevant drawings (NaN AP) are left out of the pairs.
  with_nan = np.where(np.arange(300) < 30, np.nan, l2)
  first.per_query = _per_query(with_nan, with_nan + 0.05)
  row = report_distances.cosine_against_l2(first)
  assert row['units'] == 270 and row['difference'] == pytest.approx(0.05)
  # Cosine better for both models: the Conclusions suggest it for the server.
  assert 'yet cosine distance retrieved better for every model' in (
      report_conclusions.distance_choice(run))
  second.per_query = _per_query(l2, l2)
  assert report_conclusions.distance_choice(run) == ''
  # A run whose Evaluators wrote no cosine AP per query: the two mAPs, and no advice.
  for m in (first, second):
    m.per_query = {k: v for k, v in m.per_query.items() if k != 'ap_cosine'}
  first.metrics['map_cosine'], second.metrics['map_cosine'] = 0.52, 0.461
  assert report_distances.distances(run) == [
      'skNet: cosine distance on normalised embeddings gives mAP 0.520, better than L2 (0.500).',
      'skResNet: cosine distance gives the same mAP as L2 to within 0.005 (0.461 against 0.460).']
  assert report_conclusions.distance_choice(run) == ''


def test_whether_the_residual_design_paid_off():
  plain, residual = scored_model('sknet', 0.74, 0.48), scored_model('skresnet', 0.75, 0.46)
  plain.architecture = {'residual_additions': 0, 'forward_flops': 4.0e9}
  residual.architecture = {'residual_additions': 6, 'forward_flops': 6.0e9}
  plain.history = {'images_per_second': [4.0, 4.4]}
  residual.history = {'images_per_second': [3.0, 3.3]}
  run = small_run(plain, residual)
  run.comparison = _comparison(_paired(-0.01, -0.04, 0.02), _paired(0.024, 0.018, 0.031))
  text = report_conclusions.residual_design(run)
  assert text == ('The residual connections of skResNet did not pay off in this budget: skResNet '
                  'ran at 1.50x the FLOPs per image and 0.75x the training speed (images/s) of '
                  'skNet, and skNet is better at similarity search by more than the '
                  'uncertainty.')
  run.comparison = _comparison(_paired(-0.05, -0.08, -0.02), _paired(0.0, -0.01, 0.01))
  assert report_conclusions.residual_design(run).startswith(
      'The residual connections of skResNet paid off for classification at 1.50x')
  # Mixed: each model better at one job; both are said.
  run.comparison = _comparison(_paired(-0.05, -0.08, -0.02), _paired(0.024, 0.018, 0.031))
  assert report_conclusions.residual_design(run).endswith(
      'paid off for classification at 1.50x the FLOPs per image and 0.75x the training speed '
      '(images/s) of skNet; skNet is better at similarity search.')
  # An exact tie on one job is no lead, not a reason to say nothing.
  residual.metrics['test_accuracy'] = plain.metrics['test_accuracy']
  run.comparison = _comparison(_paired(0.0, -0.03, 0.03), _paired(0.024, 0.018, 0.031))
  assert 'did not pay off' in report_conclusions.residual_design(run)
  run.comparison = _comparison(_paired(0.0, -0.03, 0.03), _paired(0.0, -0.01, 0.01))
  assert report_conclusions.residual_design(run).endswith(
      'and is better at neither job by more than the uncertainty.')
  residual.architecture = {}
  assert report_conclusions.residual_design(run) == ''


def test_the_abstract_names_the_budget_the_machine_and_the_epochs():
  machine = {'cpu_model': 'AMD EPYC', 'cpu_count': 2}
  budget = {'kind': 'minutes', 'value': 35.0, 'total_steps': 62500}
  run = small_run(
      trained_model('sknet', {}, budget=budget, machine=machine, precision='mixed_bfloat16',
                    epochs_reached=0.907),
      trained_model('skresnet', {}, budget=budget, machine=machine, precision='mixed_bfloat16',
                    epochs_reached=0.665))
  assert report_conclusions.abstract_budget(run) == (
      'Both were trained with the same budget, 35 minutes (at most 62,500 steps) on a 2-core AMD '
      'EPYC CPU in mixed bfloat16, and reached 0.91 epochs (skNet) and 0.67 epochs (skResNet), '
      'where the `full` profile trains 30 epochs: the numbers describe this budget, not the '
      'architectures trained to convergence.')
  one = small_run(run.models[0])
  assert report_conclusions.abstract_budget(one).startswith(
      'It was trained with a budget of 35 minutes (at most 62,500 steps) on a 2-core AMD EPYC CPU '
      'in mixed bfloat16, and reached 0.91 epochs, where')
  other = dict(budget, value=20.0)
  run.models[1].history['budget'] = other
  assert report_conclusions.abstract_budget(run) == ''


def test_the_settings_table_leaves_out_what_did_not_apply():
  off = {'augment': False, 'augment_scale': 0.1, 'epochs': 0, 'training_images': 2400,
         'time_budget_minutes': 0.0, 'validation_percent': 0, 'early_stopping_patience': 3,
         'batch_size': 32}
  table = report_tables.training_settings(small_run(trained_model('sknet', off)))
  assert [row[0] for row in table.rows] == ['augment', 'batch size', 'training images',
                                            'validation percent']
  on = dict(off, augment=True, validation_percent=10, epochs=5)
  table = report_tables.training_settings(small_run(trained_model('sknet', on)))
  assert {'augment scale', 'early stopping patience', 'epochs'} <= {r[0] for r in table.rows}


def test_the_train_test_gap_is_read_against_the_epochs_reached():
  under = trained_model('sknet', {}, epochs_reached=0.91)
  under.metrics.update(train_accuracy=0.512, test_accuracy=0.489)
  over = trained_model('skresnet', {}, epochs_reached=2.0)
  over.metrics.update(train_accuracy=0.89, test_accuracy=0.75)
  points = report_findings.training_behaviour(small_run(under, over))
  assert ('skNet recognises 51.2% of training drawings and 48.9% of the unseen test drawings, a '
          'gap of +2.3 points: in 0.91 epochs no training drawing was seen twice' in points[0])
  assert 'gap of +14.0 points, above the 10 points this report reads as over-fitting' in (
      points[1])
  over.metrics['train_accuracy'] = 0.80
  assert 'below the 10 points' in report_findings.training_behaviour(small_run(under, over))[1]
  # A large gap under one epoch is not explained away as drawings seen again.
  under.metrics['train_accuracy'] = 0.62
  assert ('more than 10 points although in 0.91 epochs no training drawing was seen twice: not '
          'memorisation' in report_findings.training_behaviour(small_run(under, over))[0])
  # One model: no 'both'.
  alone = trained_model('sknet', {}, last_learning_rate=0.0, peak_learning_rate=3e-4)
  assert report_findings.training_behaviour(small_run(alone))[-1] == (
      'skNet\'s learning rate ended at 0.00e+00, 0.0% of the peak 3.00e-04, the end of the '
      'schedule.')
