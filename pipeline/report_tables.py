"""The report's tables: rows of formatted cells computed from a `RunResults`.

Each function returns a `Table` (a header and rows of strings), or None when the run recorded
nothing for it; the templates lay the tables out. The cells are the recorded values, formatted
(percentages to 0.1, scores to 0.001); nothing is recomputed except sums, extremes and counts.
"""
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from components import confidence
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


def headline(run: report_data.RunResults) -> Table:
  """Each model's accuracy and retrieval, then the floors: the report's summary table."""
  rows = []
  for m in run.models:
    metrics = m.metrics
    rows.append([f'**{m.name}**', with_interval(metrics, 'train_accuracy'),
                 with_interval(metrics, 'test_accuracy'),
                 with_interval(metrics, 'train_top5_accuracy'),
                 with_interval(metrics, 'test_top5_accuracy'), with_interval(metrics, 'map'),
                 num(get_path(metrics, 'retrieval.l2.precision_at_k.10')),
                 num(metrics.get('map_cosine')), 'yes' if m.pushed_to else 'no'])
  floor = floors(run)
  chance = pct(floor['chance_accuracy'])
  rows.append(['chance / random ranking', chance, chance, '', '', num(floor['random_map']), '',
               '', ''])
  rows.append([f'raw {run.image_size}x{run.image_size} pixels (L2)', '', '', '', '',
               num(floor['raw_pixels_map']), '', '', ''])
  return Table(['model', 'train top-1', 'test top-1', 'train top-5', 'test top-5', 'mAP (L2)',
                'P@10 (L2)', 'mAP (cosine, extra)', 'pushed'], _cells(rows))


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
  return NODE_ROLES.get(kind, '').format(model=model)


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


def training_settings(run: report_data.RunResults) -> Table:
  """Each model's training settings (the Trainer's custom_config), one column per model."""
  keys = sorted({k for m in run.models for k in m.training} - {'model_name', 'seed'})
  rows = [[k.replace('_', ' ')] + [m.training.get(k, '') for m in run.models] for k in keys]
  return Table(['training setting'] + [m.name for m in run.models], _cells(rows))


# (row label, history.json key, how the value is shown)
_TRAINING_RUN_ROWS = (
    ('precision', 'precision', str),
    ('why', 'precision_reason', str),
    ('time budget', 'time_budget_minutes', lambda v: f'{v:g} min' if v else 'none'),
    ('stopped by the budget', 'stopped_by_time_budget', lambda v: 'yes' if v else 'no'),
    ('training steps', 'steps', lambda v: f'{v:,}'),
    ('drawings trained on', 'images_seen', lambda v: f'{v:,}'),
    ('epochs reached', 'epochs_reached', lambda v: f'{v:.2f}'),
    ('training time', 'training_seconds', lambda v: f'{v / 60:.1f} min'),
    ('images/s (per epoch)', 'images_per_second', lambda v: ', '.join(f'{x:.1f}' for x in v)),
    ('after fit (BatchNorm re-estimation, export)', 'post_fit_seconds', lambda v: f'{v:.0f} s'),
    ('resumed from step', 'resumed_from_step', lambda v: f'{v:,}' if v else 'no resume'))


def training_run(run: report_data.RunResults) -> Optional[Table]:
  """What each Trainer did with its settings (history.json): precision, steps, epochs reached."""
  rows = []
  for label, key, show in _TRAINING_RUN_ROWS:
    if any(m.history.get(key) is not None for m in run.models):
      rows.append([label] + [show(m.history[key]) if m.history.get(key) is not None else ''
                             for m in run.models])
  if not rows:
    return None
  return Table(['training as it ran'] + [m.name for m in run.models], rows)
