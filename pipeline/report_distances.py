"""The report's comparison of the two distances the embeddings can be searched with: cosine
against L2 for each model, paired over its own queries (per-query AP from the Evaluator), and
whether the two models' retrieval verdict holds under cosine; a run without per-query arrays
gets the two mAPs side by side.
"""
from typing import List, Optional

import numpy as np

from components.evaluator import confidence
from models.architectures import title
from pipeline.report_data import ModelResults, RunResults
from pipeline.report_tables import num

# Cosine and L2 mAP closer than this are not reported as different (runs without per-query AP).
DISTANCE_MAP_TOLERANCE = 0.005


def cosine_against_l2(model: ModelResults) -> Optional[dict]:
  """Cosine minus L2 AP, paired over the model's own queries; None without both arrays."""
  q = model.per_query or {}
  if 'ap_cosine' not in q or 'ap_l2' not in q:
    return None
  row = confidence.paired_difference(np.asarray(q['ap_cosine'], np.float64),
                                     np.asarray(q['ap_l2'], np.float64))
  return row if row['difference'] is not None else None


def _signed(value: float) -> str:
  """'+0.011'; a value that rounds to zero is '+0.000', never '-0.000'."""
  return f'{round(value, 3) + 0.0:+.3f}'


def _judged(row: dict, better: str, worse: str) -> str:
  """'+0.011 [+0.006, +0.016], cosine better' from a paired difference of better - worse."""
  text = f'{_signed(row["difference"])} {confidence.format_bounds(row["ci95"], signed=True)}'
  if not row.get('excludes_zero'):
    return text + ', no measurable difference'
  return text + f', {better if row["difference"] > 0 else worse} better'


def cosine_model_difference(run: RunResults) -> Optional[dict]:
  """The two models' mAP difference under cosine distance, paired over the same queries."""
  if len(run.models) < 2 or not run.comparison.get('models'):
    return None
  by_name = {m.name: m for m in run.models}
  first, second = (by_name.get(n) for n in run.comparison['models'][:2])
  if first is None or second is None or not all(
      'ap_cosine' in (m.per_query or {}) for m in (first, second)):
    return None
  paired = confidence.paired_difference_intervals(first.per_query, second.per_query,
                                                  ap_key='ap_cosine')
  return paired['map'] if paired and paired['map']['difference'] is not None else None


def _verdict_under_cosine(cosine: dict, l2: dict, first: str, second: str) -> str:
  """How the models' retrieval verdict under cosine compares with L2's. Only two intervals
  that exclude 0 on opposite sides reverse it; an interval that includes 0 separates nothing."""
  def leader(row):
    return first if row['difference'] > 0 else second
  if cosine['excludes_zero'] and l2['excludes_zero']:
    if leader(cosine) == leader(l2):
      return 'the same verdict as with L2.'
    return ('the opposite of L2\'s verdict, so which model retrieves better depends on the '
            'distance the search uses.')
  if l2['excludes_zero']:
    return (f'the same direction as with L2, but under cosine this test set does not separate '
            f'the models ({leader(l2)}\'s lead under L2 exceeds its interval).')
  if cosine['excludes_zero']:
    return (f'{leader(cosine)} is ahead by more than the uncertainty under cosine, though not '
            'under L2.')
  return 'neither distance separates the models on this test set.'


def distances(run: RunResults) -> List[str]:
  """Cosine distance against L2 for each model (paired over its queries) and whether the two
  models' retrieval verdict holds under cosine; without per-query arrays, the two mAPs."""
  rows = [(m, cosine_against_l2(m)) for m in run.models]
  if all(row is not None for _, row in rows) and rows:
    points = ['Cosine distance (each embedding\'s length ignored) minus L2, mAP paired over the '
              'same queries: ' + '; '.join(f'{m.title} {_judged(row, "cosine", "L2")}'
                                           for m, row in rows) + '.']
    cosine = cosine_model_difference(run)
    l2 = (run.comparison.get('paired_difference') or {}).get('map') or {}
    if (cosine is not None and cosine.get('excludes_zero') is not None
        and l2.get('excludes_zero') is not None):
      first, second = (title(name) for name in run.comparison['models'][:2])
      points.append(f'Under cosine distance, {first} minus {second} is '
                    f'{_signed(cosine["difference"])} '
                    f'{confidence.format_bounds(cosine["ci95"], signed=True)}: '
                    + _verdict_under_cosine(cosine, l2, first, second))
    return points
  points = []
  for m in run.models:  # A run without per-query arrays: the two values only.
    l2, cosine = m.metrics.get('map'), m.metrics.get('map_cosine')
    if l2 is None or cosine is None:
      continue
    if abs(l2 - cosine) >= DISTANCE_MAP_TOLERANCE:
      points.append(f'{m.title}: cosine distance on normalised embeddings gives mAP '
                    f'{num(cosine)}, {"better" if cosine > l2 else "worse"} than L2 '
                    f'({num(l2)}).')
    else:
      points.append(f'{m.title}: cosine distance gives the same mAP as L2 to within '
                    f'{DISTANCE_MAP_TOLERANCE} ({num(cosine)} against {num(l2)}).')
  return points
