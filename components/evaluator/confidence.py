"""95% bootstrap intervals of the Evaluator's means and of two models' paired difference.

With 30 test drawings per category, the sample alone moves test accuracy by several points
(README, default profile): a number without its interval cannot say whether one model beats
the other. Each metric here is a mean over units (drawings for accuracy, queries for mAP), so
the interval is scipy's percentile bootstrap of that mean, resampling the units with a fixed
seed: the same arrays always give the same interval. Schema: docs/metrics.md.
"""
from typing import Dict, List, Mapping, Optional

import numpy as np

CONFIDENCE_LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
# Resampled values held at once (batch x units, float64): 16 MB whatever the split's size.
_BATCH_VALUES = 2_000_000

Interval = Optional[List[float]]


def method() -> Dict:
  """How every interval was made, for metrics.json and comparison.json."""
  return {'method': 'percentile bootstrap (scipy.stats.bootstrap)',
          'confidence_level': CONFIDENCE_LEVEL, 'resamples': RESAMPLES, 'seed': SEED}


def mean_interval(values, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
  """[low, high] of the mean of `values` (NaN entries dropped); None below two values.

  The units are treated as independent draws. For mAP that holds the gallery fixed: it is
  the uncertainty from which queries were drawn, not from which drawings they are ranked
  against.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top  (only the Evaluator needs it)
  values = np.asarray(values, dtype=np.float64).ravel()
  values = values[~np.isnan(values)]
  if len(values) < 2:
    return None
  if np.all(values == values[0]):  # Every resample has the same mean.
    return [float(values[0]), float(values[0])]
  result = stats.bootstrap(
      (values,), np.mean, n_resamples=resamples, vectorized=True,
      batch=max(1, _BATCH_VALUES // len(values)), confidence_level=CONFIDENCE_LEVEL,
      method='percentile', random_state=np.random.default_rng(seed))
  low, high = result.confidence_interval
  return [float(low), float(high)]


def excludes_zero(interval: Interval) -> Optional[bool]:
  return None if interval is None else bool(interval[0] > 0 or interval[1] < 0)


def paired_difference(first: np.ndarray, second: np.ndarray) -> Dict:
  """Mean of first - second over the units where both are defined, with its interval."""
  both = ~np.isnan(first) & ~np.isnan(second)
  differences = first[both] - second[both]
  interval = mean_interval(differences)
  return {'difference': float(differences.mean()) if both.any() else None,
          'first': float(first[both].mean()) if both.any() else None,
          'second': float(second[both].mean()) if both.any() else None,
          'ci95': interval, 'excludes_zero': excludes_zero(interval), 'units': int(both.sum())}


def paired_difference_intervals(first_per_query: Mapping[str, np.ndarray],
                                second_per_query: Mapping[str, np.ndarray],
                                ap_key: str = 'ap_l2') -> Optional[Dict]:
  """Test accuracy and mAP (L2, or the per-query AP `ap_key`) of the first model minus the
  second's, with paired intervals.

  Arguments are `components.evaluator.outputs.load_per_query` dicts ('id', 'category', 'predicted',
  'ap_l2'). Both models saw the same test drawings, so drawing i's outcome under one model is
  paired with its own outcome under the other (aligned by id): the bootstrap resamples
  drawings, not the two models independently, which removes the variance the two share (how
  hard the drawn sketches are). None when the two test sets are not the same drawings.
  """
  first_ids, second_ids = np.asarray(first_per_query['id']), np.asarray(second_per_query['id'])
  if (len(np.unique(first_ids)) != len(first_ids) or len(first_ids) != len(second_ids)
      or set(first_ids.tolist()) != set(second_ids.tolist())):
    return None
  first_order, second_order = np.argsort(first_ids), np.argsort(second_ids)
  if not np.array_equal(np.asarray(first_per_query['category'])[first_order],
                        np.asarray(second_per_query['category'])[second_order]):
    return None  # Same ids, different labels: not the same test set.

  def correct(per_query, order):
    return (np.asarray(per_query['predicted'])[order]
            == np.asarray(per_query['category'])[order]).astype(np.float64)

  return {
      **method(),
      'difference_of': 'first - second',
      'test_drawings': int(len(first_ids)),
      'test_accuracy': paired_difference(correct(first_per_query, first_order),
                                   correct(second_per_query, second_order)),
      'map': paired_difference(np.asarray(first_per_query[ap_key], np.float64)[first_order],
                               np.asarray(second_per_query[ap_key], np.float64)[second_order]),
  }


def format_bounds(interval: Interval, percent: bool = False, signed: bool = False) -> str:
  """'[65.2, 76.3]' (percent, without the sign) or '[0.401, 0.478]'; 'n/a' without one."""
  if interval is None:
    return 'n/a'
  sign = '+' if signed else ''
  if percent:
    return f'[{interval[0] * 100:{sign}.1f}, {interval[1] * 100:{sign}.1f}]'
  return f'[{interval[0]:{sign}.3f}, {interval[1]:{sign}.3f}]'


def format_interval(value: Optional[float], interval: Interval, percent: bool = False,
                    signed: bool = False) -> str:
  """'71.0% [65.2, 76.3]' (percent) or '0.439 [0.401, 0.478]'; the value alone without one."""
  if value is None:
    return 'n/a'
  sign = '+' if signed else ''
  text = f'{value:{sign}.1%}' if percent else f'{value:{sign}.3f}'
  return text if interval is None else f'{text} {format_bounds(interval, percent, signed)}'
