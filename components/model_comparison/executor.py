"""ModelComparison's work: every metric of two evaluations side by side, the paired intervals
of the differences, comparison.json and comparison.md; and reading them back."""
import json
import os
from typing import Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf

from components.evaluator import confidence
from components.evaluator.outputs import load_per_query, read_metrics
from models import architectures

COMPARISON_JSON = 'comparison.json'
COMPARISON_MARKDOWN = 'comparison.md'
SCHEMA_VERSION = 2  # 2: paired_difference.
SECTIONS = ('classification', 'retrieval', 'floors')
# Not metrics: bookkeeping, sizes, labels and matrices.
SKIPPED = {'confusion_matrix', 'unknown', 'categories', 'k', 'distance', 'extra', 'examples',
           'support', 'queries', 'queries_without_relevant', 'raw_pixels_dim', 'recall'}
# The rows the report leads with.
HEADLINE_ROWS = (
    'classification.test.top1', 'classification.test.top5', 'classification.test.macro_f1',
    'classification.train.top1', 'retrieval.l2.map', 'retrieval.cosine.map',
    'retrieval.l2.precision_at_k.10', 'floors.random_map', 'floors.raw_pixels_map')


def flatten(metrics: Dict) -> Dict[str, Optional[float]]:
  """Every metric of metrics.json as {dotted path: value}, in the file's order."""
  rows: Dict[str, Optional[float]] = {}

  def visit(prefix: str, value) -> None:
    if isinstance(value, dict):
      if 'recall' in value and 'precision' in value:  # The 11-point PR curve.
        for recall, precision in zip(value['recall'], value['precision']):
          rows[f'{prefix}.precision@{recall:.1f}'] = precision
        return
      for key, child in value.items():
        if key not in SKIPPED:
          visit(f'{prefix}.{key}', child)
    elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
      rows[prefix] = None if value is None else float(value)

  for section in SECTIONS:
    visit(section, metrics.get(section, {}))
  return rows


def _better(path: str, first: Tuple[str, Optional[float]],
            second: Tuple[str, Optional[float]]) -> Optional[str]:
  if path.startswith('floors.') or first[1] is None or second[1] is None:
    return None  # Floors are context; an undefined value wins nothing.
  if first[1] == second[1]:
    return 'tie'
  return first[0] if first[1] > second[1] else second[0]


def compare(first: Dict, second: Dict, first_per_query: Optional[Dict] = None,
            second_per_query: Optional[Dict] = None) -> Dict:
  """comparison.json's content for two metrics.json dicts (every metric higher-is-better);
  with both models' per-query arrays (load_per_query), also the paired difference."""
  names = [first['model_name'], second['model_name']]
  if names[0] == names[1]:
    names = [f'{names[0]} (first)', f'{names[1]} (second)']
  a, b = flatten(first), flatten(second)
  rows = []
  for path in list(a) + [p for p in b if p not in a]:
    va, vb = a.get(path), b.get(path)
    rows.append({'metric': path, 'values': {names[0]: va, names[1]: vb},
                 'difference': None if va is None or vb is None else vb - va,
                 'better': _better(path, (names[0], va), (names[1], vb))})
  wins = {names[0]: 0, names[1]: 0, 'tie': 0}
  for row in rows:
    if row['better'] is not None:
      wins[row['better']] += 1
  paired = None
  if first_per_query is not None and second_per_query is not None:
    paired = confidence.paired_difference_intervals(first_per_query, second_per_query)
    if paired is not None:
      paired['difference_of'] = f'{names[0]} - {names[1]}'
    else:
      logging.warning('ModelComparison: %s and %s were not evaluated on the same test drawings '
                      '(ids or categories differ): no paired difference', *names)
  return {'schema_version': SCHEMA_VERSION, 'models': names, 'rows': rows, 'wins': wins,
          'blessed': {names[0]: bool(first.get('blessed')),
                      names[1]: bool(second.get('blessed'))},
          'paired_difference': paired}


def _difference(value: Optional[float], points: bool) -> str:
  if value is None:
    return 'n/a'
  return f'{value * 100:+.1f} pt' if points else f'{value:+.3f}'


def _title(name: str) -> str:
  """The model's name as a reader sees it ('skNet', 'skNet (first)'); comparison.json keeps
  the identifiers."""
  model, bracket, rest = name.partition(' (')
  return architectures.title(model) + bracket + rest


def _paired_lines(comparison: Dict) -> List[str]:
  paired = comparison.get('paired_difference')
  if not paired:
    return []
  names = [_title(name) for name in comparison['models']]
  lines = ['', f"## Paired difference ({names[0]} - {names[1]})", '',
           # Self-contained without its heading (the report drops the headings).
           f"Paired difference {names[0]} - {names[1]}: 95% percentile bootstrap over the "
           f"{paired['test_drawings']} test drawings both models saw (queries for mAP), "
           f"{paired['resamples']} resamples, seed {paired['seed']}; pt = percentage points.", '',
           f'| metric | {names[0]} | {names[1]} | difference | 95% interval | excludes 0 |',
           '| --- | ---: | ---: | ---: | --- | --- |']
  for key, label, percent in (('test_accuracy', 'test top-1 accuracy', True),
                              ('map', 'mAP (L2, fc_1)', False)):
    row = paired[key]
    excludes = {None: 'n/a', True: 'yes', False: 'no'}[row['excludes_zero']]
    lines.append(
        f"| {label} | {confidence.format_interval(row['first'], None, percent)} | "
        f"{confidence.format_interval(row['second'], None, percent)} | "
        f"{_difference(row['difference'], percent)} | "
        f"{confidence.format_bounds(row['ci95'], percent, signed=True)} | {excludes} |")
  return lines


def _cell(value: Optional[float], signed: bool = False) -> str:
  if value is None:
    return 'n/a'
  return f'{value:+.4f}' if signed else f'{value:.4f}'


def _table(rows: List[Dict], names: List[str]) -> List[str]:
  # First minus second, as the paired difference shows it (the rows' `difference` is the
  # reverse, kept for schema 1 readers).
  first_title, second_title = _title(names[0]), _title(names[1])
  lines = [f'| metric | {first_title} | {second_title} | difference ({first_title} - '
           f'{second_title}) | better |', '| --- | ---: | ---: | ---: | --- |']
  for row in rows:
    first, second = row['values'][names[0]], row['values'][names[1]]
    difference = None if first is None or second is None else first - second
    lines.append(f"| `{row['metric']}` | {_cell(first)} | {_cell(second)} | "
                 f"{_cell(difference, True)} | {_title(row['better'] or '')} |")
  return lines


def to_markdown(comparison: Dict) -> str:
  names = comparison['models']
  by_metric = {row['metric']: row for row in comparison['rows']}
  headline = [by_metric[path] for path in HEADLINE_ROWS if path in by_metric]
  wins = comparison['wins']
  first, second = _title(names[0]), _title(names[1])
  lines = [f'# {first} vs {second}', '',
           f"Better on {wins[names[0]]} metrics: {first}; on {wins[names[1]]}: {second}; "
           f"ties: {wins['tie']}. Blessed: " + ', '.join(
               f'{_title(n)} {"yes" if comparison["blessed"][n] else "no"}' for n in names) + '.',
           'Retrieval is leave-one-out on the test split; L2 on fc_1 is the metric, cosine an '
           'extra; floors are context (same data for both models). Schema: docs/metrics.md.',
           '', '## Headline', ''] + _table(headline, names) + _paired_lines(comparison) + [
               '', '## Every metric', ''] + _table(comparison['rows'], names)
  return '\n'.join(lines) + '\n'


def read_comparison(uri: str) -> Dict:
  """comparison.json of a ModelComparison artifact."""
  with tf.io.gfile.GFile(os.path.join(uri, COMPARISON_JSON)) as f:
    return json.load(f)


def run(first_evaluation, second_evaluation, comparison, first_embeddings=None,
        second_embeddings=None) -> None:
  """ModelComparison's work on its artifacts (components/model_comparison/component.py)."""
  per_query = [load_per_query(e.uri) if e is not None else None
               for e in (first_embeddings, second_embeddings)]
  result = compare(read_metrics(first_evaluation.uri), read_metrics(second_evaluation.uri),
                   *per_query)
  tf.io.gfile.makedirs(comparison.uri)  # Kubeflow's launcher does not create it.
  with tf.io.gfile.GFile(os.path.join(comparison.uri, COMPARISON_JSON), 'w') as f:
    json.dump(result, f, indent=2, allow_nan=False)
  with tf.io.gfile.GFile(os.path.join(comparison.uri, COMPARISON_MARKDOWN), 'w') as f:
    f.write(to_markdown(result))
  by_metric = {row['metric']: row for row in result['rows']}
  comparison.set_string_custom_property('models', ','.join(result['models']))
  for path, key in (('retrieval.l2.map', 'better_map'),
                    ('classification.test.top1', 'better_test_accuracy')):
    if path in by_metric:
      comparison.set_string_custom_property(key, by_metric[path]['better'] or '')
  for key in ('test_accuracy', 'map'):  # 1: the interval of the difference excludes 0.
    excludes = (result['paired_difference'] or {}).get(key, {}).get('excludes_zero')
    if excludes is not None:
      comparison.set_int_custom_property(f'{key}_difference_significant', int(excludes))
