"""The report's tables: rows of formatted cells computed from a `RunResults`.

Each function returns a `Table` (a header and rows of strings), or None when the run recorded
nothing for it; the templates lay the tables out. The cells are the recorded values, formatted
(percentages to 0.1, scores to 0.001); nothing is recomputed except sums, extremes and counts.
"""
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from components.evaluator import confidence
from models.architectures import title
from pipeline import report_data
from pipeline.report_data import get_path

# Categories listed one per row in the sampling table; beyond, totals and the spread.
MANIFEST_ROWS = 20
# Categories listed at each end of a per-category table longer than twice this.
CATEGORY_ROWS = 10


@dataclasses.dataclass
class Table:
  header: List[str]
  rows: List[List[str]]

  def row(self, first_cell: str) -> Optional[List[str]]:
    """The row whose first cell is `first_cell` (None if none is)."""
    return next((row for row in self.rows if row and row[0] == first_cell), None)


def pct(value) -> str:
  return 'n/a' if value is None else f'{value:.1%}'


def num(value, digits: int = 3) -> str:
  return 'n/a' if value is None else f'{value:.{digits}f}'


def metric_text(metrics: Dict[str, Any], key: str) -> str:
  """A metric as the report writes it: a percentage for accuracies, else a score."""
  value = get_path(metrics, key)
  return pct(value) if 'accuracy' in key else num(value)


def with_interval(metrics: Dict[str, Any], key: str) -> str:
  """The value and its 95% interval ('71.0% [65.2, 76.3]'); the value alone when metrics.json
  has no interval (schema 2 and older)."""
  return confidence.format_interval(metrics.get(key), metrics.get(f'{key}_ci95'),
                                    percent='accuracy' in key)


def _cells(rows: Sequence[Sequence[Any]]) -> List[List[str]]:
  return [[str(cell) for cell in row] for row in rows]


def floors(run: report_data.RunResults) -> Dict[str, Any]:
  """The first model's floors: chance accuracy, random-ranking and raw-pixel mAP, and the
  raw pixels' dimension (all the models share the test split)."""
  first = run.models[0].metrics
  return {'chance_accuracy': first.get('chance_accuracy'),
          'random_map': get_path(first, 'floors.random_map', first.get('random_map')),
          'raw_pixels_map': get_path(first, 'floors.raw_pixels_map', first.get('raw_pixels_map')),
          'raw_pixels_dim': get_path(first, 'floors.raw_pixels_dim')}


def classification(run: report_data.RunResults) -> Table:
  """Each model's top-1 and top-5 accuracy on both splits with their intervals, then chance."""
  rows = []
  for m in run.models:
    metrics = m.metrics
    train, test = metrics.get('train_accuracy'), metrics.get('test_accuracy')
    rows.append([f'**{m.title}**', with_interval(metrics, 'train_accuracy'),
                 with_interval(metrics, 'test_accuracy'),
                 with_interval(metrics, 'train_top5_accuracy'),
                 with_interval(metrics, 'test_top5_accuracy'),
                 'n/a' if train is None or test is None else f'{(train - test) * 100:+.1f} pt'])
  chance = floors(run)['chance_accuracy']
  if chance is not None:
    rows.append(['chance', pct(chance), pct(chance), '', '', ''])
  return Table(['model', 'train top-1', 'test top-1', 'train top-5', 'test top-5',
                'train - test (top-1)'], _cells(rows))


def retrieval(run: report_data.RunResults) -> Table:
  """Each model's leave-one-out mAP (with its interval), P@10 and cosine mAP, then the floors."""
  rows = [[f'**{m.title}**', with_interval(m.metrics, 'map'),
           num(get_path(m.metrics, 'retrieval.l2.precision_at_k.10')),
           num(m.metrics.get('map_cosine'))] for m in run.models]
  floor = floors(run)
  if floor['random_map'] is not None:
    rows.append(['random ranking', num(floor['random_map']), '', ''])
  if floor['raw_pixels_map'] is not None:
    rows.append([f'raw {run.image_size}x{run.image_size} pixels (L2)',
                 num(floor['raw_pixels_map']), '', ''])
  return Table(['model', 'mAP (L2)', 'P@10 (L2)', 'mAP (cosine, extra)'], _cells(rows))


def paired(run: report_data.RunResults, key: str) -> Optional[Table]:
  """ModelComparison's paired difference of `key` ('test_accuracy' or 'map'): both values,
  the difference, its 95% interval and whether the interval excludes 0."""
  row = (run.comparison.get('paired_difference') or {}).get(key) or {}
  if row.get('difference') is None or row.get('ci95') is None:
    return None
  first, second = (title(name) for name in run.comparison['models'][:2])
  percent = 'accuracy' in key
  show = pct if percent else num
  difference = (f'{row["difference"] * 100:+.1f} pt' if percent else f'{row["difference"]:+.3f}')
  return Table(['paired over the same test drawings', first, second,
                f'{first} - {second}', '95% interval', 'excludes 0'],
               [[{'test_accuracy': 'test top-1 accuracy', 'map': 'mAP (L2, fc_1)'}.get(key, key),
                 show(row.get('first')), show(row.get('second')), difference,
                 confidence.format_bounds(row['ci95'], percent, signed=True),
                 {True: 'yes', False: 'no'}.get(row.get('excludes_zero'), 'n/a')]])


def per_category(model: report_data.ModelResults, count: int = CATEGORY_ROWS) -> Optional[Table]:
  """AP and test accuracy per category, best AP first; the best and worst `count` when there
  are more than twice as many."""
  per_class = get_path(model.metrics, 'classification.test.per_class') or {}
  per_ap = get_path(model.metrics, 'retrieval.l2.per_category_ap') or {}
  scored = [(c, per_ap.get(c), get_path(per_class, f'{c}.accuracy')) for c in per_ap
            if per_ap.get(c) is not None]
  if not scored:
    return None
  scored.sort(key=lambda row: (-row[1], row[0]))
  shown = scored if len(scored) <= 2 * count else scored[:count] + [None] + scored[-count:]
  rows = [['...', '', ''] if row is None else [row[0], num(row[1]), pct(row[2])]
          for row in shown]
  return Table(['category (best AP first)', 'AP (L2)', 'test accuracy'], rows)


def confusion_pairs(model: report_data.ModelResults,
                    count: int = 8) -> List[Tuple[str, str, int, int]]:
  """(true, predicted, drawings, true's test drawings) of the most frequent confusions."""
  matrix = get_path(model.metrics, 'classification.test.confusion_matrix')
  names = get_path(model.metrics, 'classification.categories')
  if not matrix or not names:
    return []
  matrix = np.asarray(matrix)
  pairs = [(names[t], names[p], int(matrix[t, p]), int(matrix[t].sum()))
           for t in range(len(names)) for p in range(len(names)) if t != p and matrix[t, p]]
  return sorted(pairs, key=lambda x: (-x[2], x[0], x[1]))[:count]


def confusions(model: report_data.ModelResults) -> Optional[Table]:
  pairs = confusion_pairs(model)
  if not pairs:
    return None
  return Table(['true category', 'predicted as', 'drawings', 'of'], _cells(pairs))


# What each component of the pipeline does, by its type (the node id before any '.<model>').
NODE_ROLES = {
    'ImportSchemaGen': 'imports the curated schema',
    'QuickDrawExampleGen': 'samples and renders the drawings',
    'StatisticsGen': 'computes the splits\' statistics',
    'ExampleValidator': 'checks the statistics against the schema',
    'Transform': 'resizes the drawings for the models',
    'Trainer': 'fits {model}',
    'LatestModelResolver': 'finds the newest {model} of earlier runs to warm-start from',
    'BaselineResolver': 'finds the newest blessed {model} of earlier runs (ML Metadata)',
    'EmbeddingEvaluator': 'measures {model} with TFMA and decides its blessing',
    'ModelComparison': 'sets the models\' metrics side by side',
    'Pusher': 'exports {model} to the registry when blessed',
}


def node_role(node_id: str) -> str:
  kind, _, model = node_id.partition('.')
  return NODE_ROLES.get(kind, '').format(model=title(model))


def wall_time(run: report_data.RunResults) -> Table:
  """Each execution's wall time and role, in the order they started, and the whole run's."""
  nodes = sorted(run.nodes.values(), key=lambda n: n.start_time)
  rows = [[n.node_id, n.state.lower(), f'{n.seconds:.0f}', node_role(n.node_id)] for n in nodes]
  total = (max(n.end_time for n in nodes) - min(n.start_time for n in nodes)) if nodes else 0
  rows.append(['**whole run**', '', f'**{total:.0f}**', ''])
  return Table(['component', 'state', 'wall time (s)', 'what it does'], rows)


def sampling(manifest: Dict[str, Any]) -> Optional[Table]:
  """The ExampleGen's counts per category (its manifest); past MANIFEST_ROWS categories, their
  sums and spread."""
  counts = manifest.get('categories') or {}
  if isinstance(counts, list):  # A list of rows with a 'category' key.
    counts = {row.get('category', str(i)): row for i, row in enumerate(counts)}
  if not isinstance(counts, dict) or not counts:
    return None
  keys = []
  for row in counts.values():
    for key, value in row.items():
      if key != 'category' and isinstance(value, (int, float)) and key not in keys:
        keys.append(key)
  rows = [[name] + [row.get(k, '') for k in keys] for name, row in sorted(counts.items())]
  if sampling_summarised(manifest):  # 100 rows are not read: totals and the spread instead.
    columns = [[row.get(k) for row in counts.values() if row.get(k) is not None] for k in keys]
    rows = [[f'all {len(rows)} (sum)'] + [sum(c) if c else '' for c in columns],
            ['smallest per category'] + [min(c) if c else '' for c in columns],
            ['largest per category'] + [max(c) if c else '' for c in columns]]
  return Table(['category'] + keys, _cells(rows))


def sampling_summarised(manifest: Dict[str, Any]) -> bool:
  """Whether the sampling table shows sums and spread rather than a row per category."""
  return len(manifest.get('categories') or ()) > MANIFEST_ROWS


# Settings that only act when another one is on: (setting, the one it depends on).
_DEPENDS_ON = (('augment_', 'augment'), ('early_stopping_patience', 'validation_percent'))
# Budget limits that are off at 0 (the budget that ended training is named in 2.4).
_OFF_AT_ZERO = ('epochs', 'training_images', 'time_budget_minutes')


def _applies(key: str, training: Dict[str, Any]) -> bool:
  if key in _OFF_AT_ZERO and not training.get(key):
    return False
  return not any(key.startswith(prefix) and key != switch and not training.get(switch)
                 for prefix, switch in _DEPENDS_ON)


def training_settings(run: report_data.RunResults) -> Table:
  """Each model's training settings (the Trainer's custom_config), one column per model;
  settings no model used (augmentation's when it is off, a budget limit at 0) left out."""
  keys = sorted(k for k in {k for m in run.models for k in m.training} - {'model_name', 'seed'}
                if any(_applies(k, m.training) for m in run.models))
  rows = [[k.replace('_', ' ')] + [m.training.get(k, '') for m in run.models] for k in keys]
  return Table(['training setting'] + [m.title for m in run.models], _cells(rows))
