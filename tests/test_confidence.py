"""Bootstrap intervals: against the normal approximation, and the paired difference's verdict."""
import numpy as np
import pytest

from components.evaluator import confidence


def _bernoulli(p, n, seed=0):
  return (np.random.default_rng(seed).random(n) < p).astype(float)


def _width(interval):
  return interval[1] - interval[0]


@pytest.mark.parametrize('p,n', [(0.7, 400), (0.3, 1000), (0.95, 2000)])
def test_a_proportion_matches_the_normal_approximation(p, n):
  values = _bernoulli(p, n)
  mean = values.mean()
  half = 1.96 * np.sqrt(mean * (1 - mean) / n)
  low, high = confidence.mean_interval(values)
  assert low <= mean <= high
  # 2000 resamples: the percentile endpoints are within ~0.2 standard errors of the normal ones.
  assert low == pytest.approx(mean - half, abs=0.25 * half + 1e-3)
  assert high == pytest.approx(mean + half, abs=0.25 * half + 1e-3)


def test_intervals_contain_the_mean_and_shrink_with_more_data():
  rng = np.random.default_rng(3)
  widths = []
  for n in (50, 500, 5000):
    ap = rng.beta(2, 3, size=n)  # Average precisions: continuous values in [0, 1].
    interval = confidence.mean_interval(ap)
    assert interval[0] < ap.mean() < interval[1]
    assert 0 <= interval[0] and interval[1] <= 1
    widths.append(_width(interval))
  assert widths[0] > 2.5 * widths[1] > 2.5 ** 2 * widths[2]  # ~ 1 / sqrt(n): sqrt(10) = 3.2.


def test_reproducible_nan_excluded_and_degenerate_cases():
  values = _bernoulli(0.6, 300, seed=5)
  assert confidence.mean_interval(values) == confidence.mean_interval(values.copy())
  with_nan = np.concatenate([values, [np.nan] * 7])  # Queries without a relevant item.
  assert confidence.mean_interval(with_nan) == confidence.mean_interval(values)
  assert confidence.mean_interval([1.0]) is None
  assert confidence.mean_interval([np.nan, np.nan, 0.5]) is None
  assert confidence.mean_interval(np.ones(40)) == [1.0, 1.0]


def test_coverage_is_close_to_95_percent():
  # 200 samples of 200 drawings at a true accuracy of 0.693 (off the 1/200 grid, so no
  # endpoint equals it): about 190 intervals hold it.
  covered = [low <= 0.693 <= high for low, high in (
      confidence.mean_interval(_bernoulli(0.693, 200, seed), resamples=1000)
      for seed in range(200))]
  assert 0.9 <= np.mean(covered) <= 0.99


def test_large_splits_stay_fast_and_bounded():
  values = _bernoulli(0.5, 100_000, seed=2)  # The full profile's 100,000 training drawings.
  low, high = confidence.mean_interval(values)
  assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.25 / 100_000), rel=0.15)


def _per_query(correct, ap, ids=None, seed=0):
  n = len(correct)
  categories = np.array([f'c{i % 10}' for i in range(n)])
  wrong = np.array([f'c{(i + 1) % 10}' for i in range(n)])
  return {'id': np.array([f'd{i:04d}' for i in range(n)]) if ids is None else ids,
          'category': categories, 'predicted': np.where(correct, categories, wrong),
          'ap_l2': np.asarray(ap, dtype=float)}


def test_paired_difference_excludes_zero_for_clearly_different_models():
  rng = np.random.default_rng(0)
  n = 300
  strong = _per_query(rng.random(n) < 0.9, rng.beta(6, 2, size=n))
  weak = _per_query(rng.random(n) < 0.5, rng.beta(2, 6, size=n))
  result = confidence.paired_difference_intervals(strong, weak)
  assert result['test_drawings'] == n
  accuracy = result['test_accuracy']
  assert accuracy['difference'] == pytest.approx(
      np.mean(strong['predicted'] == strong['category'])
      - np.mean(weak['predicted'] == weak['category']))
  assert accuracy['ci95'][0] > 0 and accuracy['excludes_zero'] is True
  assert result['map']['ci95'][0] > 0 and result['map']['excludes_zero'] is True
  # The other way round: the same interval, negated.
  reverse = confidence.paired_difference_intervals(weak, strong)['test_accuracy']
  assert reverse['difference'] == pytest.approx(-accuracy['difference'])
  assert reverse['ci95'][1] < 0 and reverse['excludes_zero'] is True


def test_paired_difference_includes_zero_for_equal_models():
  rng = np.random.default_rng(1)
  n = 300
  model = _per_query(rng.random(n) < 0.7, rng.beta(3, 3, size=n))
  same = confidence.paired_difference_intervals(model, dict(model))
  assert same['test_accuracy']['ci95'] == [0.0, 0.0]
  assert same['test_accuracy']['excludes_zero'] is False
  assert same['map']['excludes_zero'] is False
  # Equally good models with independent errors: the interval straddles 0 about 95% of the time.
  for key in ('test_accuracy', 'map'):
    verdicts = []
    for _ in range(40):
      first = _per_query(rng.random(n) < 0.7, rng.beta(3, 3, size=n))
      second = _per_query(rng.random(n) < 0.7, rng.beta(3, 3, size=n))
      verdicts.append(confidence.paired_difference_intervals(first, second)[key]['excludes_zero'])
    assert np.mean(verdicts) <= 0.15, key


def test_pairing_sees_a_difference_that_separate_intervals_cannot():
  rng = np.random.default_rng(2)
  n = 600
  first_right = rng.random(n) < 0.75
  second_right = first_right.copy()
  # The second model loses 30 of the first's correct drawings and gains none.
  second_right[rng.choice(np.flatnonzero(first_right), 30, replace=False)] = False
  ap = rng.beta(3, 3, size=n)
  first, second = _per_query(first_right, ap), _per_query(second_right, ap)
  own = [confidence.mean_interval(right.astype(float)) for right in (first_right, second_right)]
  assert own[0][0] < own[1][1]  # The two models' own intervals overlap...
  paired = confidence.paired_difference_intervals(first, second)['test_accuracy']
  assert paired['excludes_zero'] is True  # ...the paired one excludes 0.
  assert paired['difference'] == pytest.approx(30 / n)


def test_drawings_are_paired_by_id_not_by_row():
  rng = np.random.default_rng(4)
  n = 200
  first = _per_query(rng.random(n) < 0.8, rng.beta(4, 2, size=n))
  second = _per_query(rng.random(n) < 0.6, rng.beta(2, 4, size=n))
  aligned = confidence.paired_difference_intervals(first, second)
  shuffle = rng.permutation(n)
  shuffled = confidence.paired_difference_intervals(
      first, {key: value[shuffle] for key, value in second.items()})
  assert shuffled == aligned
  other_ids = dict(second, id=np.array([f'x{i}' for i in range(n)]))
  assert confidence.paired_difference_intervals(first, other_ids) is None
  other_labels = dict(second, category=np.roll(second['category'], 1))
  assert confidence.paired_difference_intervals(first, other_labels) is None


def test_the_queries_without_relevant_items_are_left_out():
  rng = np.random.default_rng(5)
  n = 100
  ap = rng.beta(3, 3, size=n)
  ap[:4] = np.nan  # Single-drawing categories: NaN in both models' files.
  first = _per_query(rng.random(n) < 0.7, ap)
  second = _per_query(rng.random(n) < 0.7, np.where(np.isnan(ap), np.nan, ap * 0.9))
  result = confidence.paired_difference_intervals(first, second)['map']
  assert result['units'] == n - 4
  assert result['difference'] == pytest.approx(np.nanmean(ap) - np.nanmean(ap * 0.9))


def test_formatting():
  assert confidence.format_interval(0.71, [0.652, 0.763], percent=True) == '71.0% [65.2, 76.3]'
  assert confidence.format_interval(0.439, [0.401, 0.478]) == '0.439 [0.401, 0.478]'
  assert confidence.format_interval(0.439, None) == '0.439'
  assert confidence.format_interval(None, [0.1, 0.2]) == 'n/a'
  assert confidence.format_bounds([-0.012, 0.034], percent=True, signed=True) == '[-1.2, +3.4]'
