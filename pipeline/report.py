"""The experiment report of one pipeline run, built from what ML Metadata recorded.

  quickdraw-tfx report                        # the latest run of the default profile
  quickdraw-tfx report --profile smoke --output-dir /tmp/qd --run-id <id>

Writes `report.md` (figures beside it in `figures/`) and a self-contained `report.html`
(figures embedded) to `<output_dir>/reports/<run id>/` unless `--out` says otherwise. Every
number comes from the run's artifacts: the Evaluator's metrics, the Trainers' histories, the
ExampleGen's manifest and examples, and the executions' times; nothing is recomputed here
except the drawings' pictures.
"""
from __future__ import annotations  # Annotations name `results`, imported only when needed.

import argparse
import base64
import dataclasses
import html
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from components import confidence
from pipeline import config as config_lib  # Sets TF_USE_LEGACY_KERAS before TensorFlow loads.
from pipeline import report_figures

if TYPE_CHECKING:
  from pipeline import results  # TFX and ML Metadata: imported at run time only when needed.

REPORT_MD = 'report.md'
REPORT_HTML = 'report.html'
FIGURES = 'figures'
# Categories listed one per row in the sampling table; beyond, totals and the spread.
MANIFEST_ROWS = 20
MODEL_NAMES_FIRST = config_lib.MODEL_NAMES[0]
_DATA_CREDIT = ('Drawings: Google\'s Quick, Draw! dataset, "This data made available by Google, '
                'Inc." under CC BY 4.0.')


@dataclasses.dataclass
class ModelResults:
  """What one model's Trainer, Evaluator and Pusher recorded."""
  name: str
  metrics: Dict[str, Any]
  history: Dict[str, Any]
  training: Dict[str, Any]
  per_query: Dict[str, np.ndarray]
  pushed_to: str  # '' when not pushed.


@dataclasses.dataclass
class RunResults:
  """Everything the report shows about one run."""
  pipeline_name: str
  run_id: str
  metadata_path: str
  nodes: Dict[str, results.NodeRun]
  sampling: Dict[str, Any]
  manifest: Dict[str, Any]
  models: List[ModelResults]
  comparison: Dict[str, Any]  # ModelComparison's comparison.json ({} when absent)
  comparison_md: str
  test_drawings: Dict[str, Tuple[str, bytes]]  # drawing id -> (category, PNG)
  image_size: int


# ------------------------------------------------------------------------------------------
# Collecting: ML Metadata -> artifacts -> RunResults


def collect(metadata_path: str, pipeline_name: str, run_id: Optional[str] = None) -> RunResults:
  """The run `run_id` (default: the latest) of `pipeline_name`, read from its artifacts."""
  from pipeline import results  # pylint: disable=g-import-not-at-top  (TFX: not for --help)
  store = results.open_store(metadata_path)
  if run_id is None:
    ids = results.run_ids(store, pipeline_name)
    if not ids:
      raise LookupError(f'{metadata_path}: no run of pipeline {pipeline_name!r}; run it first')
    run_id = ids[-1]
  nodes = results.node_runs(store, pipeline_name, run_id)
  example_gen = nodes.get('QuickDrawExampleGen')
  if example_gen is None or not example_gen.outputs.get('examples'):
    raise LookupError(f'run {run_id}: no examples recorded (did the run fail early?)')
  examples = example_gen.outputs['examples'][0]
  manifest = _manifest(examples)
  sampling = _sampling(manifest)
  models = []
  for node_id in sorted(n for n in nodes if n.startswith('EmbeddingEvaluator.')):
    models.append(_model_results(nodes, node_id.split('.', 1)[1]))
  if not models:
    raise LookupError(f'run {run_id}: no EmbeddingEvaluator output (did the run fail early?)')
  comparison_node = nodes.get('ModelComparison')
  comparison, comparison_md = {}, ''
  if comparison_node and comparison_node.outputs.get('comparison'):
    from components import model_comparison  # pylint: disable=g-import-not-at-top
    uri = comparison_node.outputs['comparison'][0].uri
    comparison = model_comparison.read_comparison(uri)
    comparison_md = _read_text(os.path.join(uri, model_comparison.COMPARISON_MARKDOWN))
  if len(models) >= 2 and not comparison.get('paired_difference'):
    # A run whose ModelComparison was not given the per-drawing outcomes: the same paired
    # intervals from the Evaluators' own per-query arrays.
    comparison = dict(comparison, models=comparison.get('models') or [m.name for m in models[:2]])
    by_name = {model.name: model for model in models}
    first, second = comparison['models'][:2]
    comparison['paired_difference'] = confidence.paired_difference_intervals(
        by_name[first].per_query, by_name[second].per_query)
  image_size = int(models[0].training.get('image_size', 128))
  return RunResults(pipeline_name, run_id, metadata_path, nodes, sampling, manifest, models,
                    comparison, comparison_md, _test_drawings(examples.uri), image_size)


def _model_results(nodes: Dict[str, results.NodeRun], name: str) -> ModelResults:
  from components import embedding_evaluator  # pylint: disable=g-import-not-at-top
  evaluator = nodes[f'EmbeddingEvaluator.{name}']
  metrics = embedding_evaluator.read_metrics(evaluator.outputs['evaluation'][0].uri)
  per_query = embedding_evaluator.load_per_query(evaluator.outputs['embeddings'][0].uri)
  trainer = nodes.get(f'Trainer.{name}')
  history, training = {}, {}
  if trainer is not None:
    training = _json_property(trainer, 'custom_config')
    if trainer.outputs.get('model_run'):
      from models import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
      text = _read_text(os.path.join(trainer.outputs['model_run'][0].uri,
                                     trainer_lib.HISTORY_FILE))
      history = json.loads(text) if text else {}
  pushed_to = ''
  pusher = nodes.get(f'Pusher.{name}')
  if pusher is not None and pusher.outputs.get('pushed_model'):
    props = pusher.outputs['pushed_model'][0].custom_properties
    if 'pushed' in props and props['pushed'].int_value:
      pushed_to = props['pushed_destination'].string_value
  return ModelResults(name, metrics, history, training, per_query, pushed_to)


def _manifest(examples) -> Dict[str, Any]:
  from components import quickdraw_example_gen  # pylint: disable=g-import-not-at-top
  try:
    return quickdraw_example_gen.read_manifest(examples)
  except FileNotFoundError:  # A run made before the ExampleGen wrote manifests.
    return {}


def _sampling(manifest: Dict[str, Any]) -> Dict[str, Any]:
  """Source, seed and sizes of the sample, from the manifest's header."""
  sampling = {k: v for k, v in manifest.items() if not isinstance(v, (list, dict))}
  if manifest.get('categories'):
    sampling['num_categories'] = len(manifest['categories'])
  return sampling


def _json_property(node: results.NodeRun, key: str) -> Dict[str, Any]:
  text = node.properties.get(key, '')
  try:
    value = json.loads(text) if text else {}
  except ValueError:
    return {}
  return value if isinstance(value, dict) else {}


def _read_text(path: str) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return ''
  with tf.io.gfile.GFile(path) as f:
    return f.read()


def _test_drawings(examples_uri: str) -> Dict[str, Tuple[str, bytes]]:
  """drawing id -> (category, PNG bytes) of the test split."""
  from components import quickdraw_example_gen  # pylint: disable=g-import-not-at-top
  split = quickdraw_example_gen.read_split(examples_uri, 'test')
  return dict(zip(split['id'], zip(split['category'], split['png'])))


# ------------------------------------------------------------------------------------------
# Figures (matplotlib, written as PNG)


_pyplot = report_figures.pyplot
_save = report_figures.save


def _as_model_input(pngs: Sequence[bytes], image_size: int) -> np.ndarray:
  """The drawings exactly as the models see them (the Transform's decode and resize)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from models import preprocessing  # pylint: disable=g-import-not-at-top
  return preprocessing.decode_and_resize(tf.constant(list(pngs)), image_size).numpy()[..., 0]


def figure_samples(run: RunResults, path: str, categories: int = 6, per_category: int = 5):
  by_category: Dict[str, List[bytes]] = {}
  for drawing_id in sorted(run.test_drawings):
    category, png = run.test_drawings[drawing_id]
    by_category.setdefault(category, []).append(png)
  chosen = sorted(by_category)[:categories]
  plt = _pyplot()
  figure, axes = plt.subplots(len(chosen), per_category, squeeze=False,
                              figsize=(1.6 * per_category, 1.7 * len(chosen)))
  for row, category in enumerate(chosen):
    images = _as_model_input(by_category[category][:per_category], run.image_size)
    for column in range(per_category):
      ax = axes[row][column]
      ax.set_xticks([])
      ax.set_yticks([])
      if column < len(images):
        ax.imshow(images[column], cmap='gray_r', vmin=0, vmax=1)
      if column == 0:
        ax.set_ylabel(category, fontsize=9)
  figure.suptitle(f'Test drawings as the models see them ({run.image_size}x{run.image_size})',
                  fontsize=10)
  _save(figure, path)


def figure_learning_curves(run: RunResults, path: str) -> bool:
  curves = [(m.name, m.history.get('history', {})) for m in run.models if m.history]
  if not curves:
    return False
  plt = _pyplot()
  figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
  for name, history in curves:
    for key, values in sorted(history.items()):
      epochs = range(1, len(values) + 1)
      style = '--' if key.startswith('val_') else '-'
      if key.endswith('loss'):
        loss_ax.plot(epochs, values, style, marker='o', label=f'{name} {key}')
      elif key.endswith('accuracy'):
        acc_ax.plot(epochs, values, style, marker='o', label=f'{name} {key}')
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  for ax, title in ((loss_ax, 'loss per epoch'), (acc_ax, 'accuracy per epoch')):
    ax.set_xlabel('epoch')
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  _save(figure, path)
  return True


def figure_pr_curves(run: RunResults, path: str) -> bool:
  plt = _pyplot()
  figure, ax = plt.subplots(figsize=(5.5, 4.2))
  drawn = False
  for model in run.models:
    for distance, style in (('l2', '-'), ('cosine', ':')):
      curve = _get(model.metrics, f'retrieval.{distance}.pr_curve_11pt')
      if curve and curve.get('precision') and None not in curve['precision']:
        label = f'{model.name}, {"L2" if distance == "l2" else "cosine (extra)"}'
        ax.plot(curve['recall'], curve['precision'], style, marker='o', markersize=3,
                label=label)
        drawn = True
  random_map = _get(run.models[0].metrics, 'floors.random_map')
  if random_map is not None:
    ax.axhline(random_map, color='gray', lw=0.8, label='random ranking (mAP)')
  ax.set_xlabel('recall')
  ax.set_ylabel('interpolated precision')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  if not drawn:
    plt.close(figure)
    return False
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title('Leave-one-out retrieval, test split (11-point PR)', fontsize=10)
  _save(figure, path)
  return True


def retrieval_examples(model: ModelResults, queries: int = 6,
                       k: int = 10) -> List[Tuple[int, List[int]]]:
  """Rows (query index, its k nearest other drawings from the Evaluator's neighbour lists),
  one query per category: the category's first drawing by id."""
  categories = model.per_query['category']
  ids = model.per_query['id']
  chosen, seen = [], set()
  for index in np.argsort(ids, kind='stable'):
    if categories[index] not in seen:
      seen.add(categories[index])
      chosen.append(int(index))
  chosen = sorted(chosen, key=lambda i: categories[i])[:queries]
  neighbours = model.per_query['neighbors_l2']
  return [(query, [int(j) for j in neighbours[query][:k] if j >= 0]) for query in chosen]


def figure_retrieval(run: RunResults, model: ModelResults, path: str) -> bool:
  rows = retrieval_examples(model)
  if not rows:
    return False
  ids, categories = model.per_query['id'], model.per_query['category']
  k = max(len(found) for _, found in rows)
  plt = _pyplot()
  figure, axes = plt.subplots(len(rows), k + 1, squeeze=False,
                              figsize=(1.25 * (k + 1), 1.45 * len(rows)))
  for row, (query, found) in enumerate(rows):
    pictures = _as_model_input([run.test_drawings[ids[i]][1] for i in [query] + found],
                               run.image_size)
    for column in range(k + 1):
      ax = axes[row][column]
      ax.set_xticks([])
      ax.set_yticks([])
      if column >= len(pictures):
        ax.axis('off')
        continue
      ax.imshow(pictures[column], cmap='gray_r', vmin=0, vmax=1)
      index = ([query] + found)[column]
      if column == 0:
        ax.set_title(f'query: {categories[index]}', fontsize=7, fontweight='bold')
        colour, width = 'black', 2.5
      else:
        right = categories[index] == categories[query]
        colour, width = ('tab:green', 1.5) if right else ('tab:red', 3)
        if not right:
          ax.set_title(categories[index], fontsize=6, color='tab:red')
      for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)
  figure.suptitle(f'{model.name}: each query (left) and its 10 nearest test drawings by L2 on '
                  'fc_1; red = wrong category', fontsize=9)
  _save(figure, path)
  return True


def figure_wall_time(run: RunResults, path: str) -> None:
  nodes = sorted(run.nodes.values(), key=lambda n: n.start_time)
  plt = _pyplot()
  figure, ax = plt.subplots(figsize=(7, 0.32 * len(nodes) + 0.8))
  labels = [f'{n.node_id}{" (cached)" if n.state == "CACHED" else ""}' for n in nodes]
  ax.barh(range(len(nodes)), [n.seconds for n in nodes], color='tab:blue')
  ax.set_yticks(range(len(nodes)), labels, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel('wall time (s)')
  ax.grid(axis='x', alpha=0.3)
  _save(figure, path)


# ------------------------------------------------------------------------------------------
# Text: numbers -> Markdown


_get = report_figures.get_path  # A dotted path into nested metrics, or the default.


def _pct(value) -> str:
  return 'n/a' if value is None else f'{value:.1%}'


def _num(value, digits: int = 3) -> str:
  return 'n/a' if value is None else f'{value:.{digits}f}'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


def _with_interval(metrics: Dict[str, Any], key: str) -> str:
  """The value and its 95% interval ('71.0% [65.2, 76.3]'); the value alone when metrics.json
  has no interval (schema 2 and older)."""
  return confidence.format_interval(metrics.get(key), metrics.get(f'{key}_ci95'),
                                    percent='accuracy' in key)


def _interval_note(run: RunResults) -> str:
  method = next((m.metrics['ci95_method'] for m in run.models if m.metrics.get('ci95_method')),
                None)
  if not method:
    return ''
  return (f'Brackets: {method["confidence_level"]:.0%} {method["method"].split(" (")[0]} '
          f'intervals ({method["resamples"]} resamples, seed {method["seed"]}) over the drawings '
          'evaluated (accuracy) and over the scored queries (mAP, the gallery held fixed).')


def _headline_table(run: RunResults) -> str:
  rows = []
  for m in run.models:
    metrics = m.metrics
    rows.append([f'**{m.name}**', _with_interval(metrics, 'train_accuracy'),
                 _with_interval(metrics, 'test_accuracy'),
                 _with_interval(metrics, 'train_top5_accuracy'),
                 _with_interval(metrics, 'test_top5_accuracy'), _with_interval(metrics, 'map'),
                 _num(_get(metrics, 'retrieval.l2.precision_at_k.10')),
                 _num(metrics.get('map_cosine')),
                 'yes' if m.pushed_to else 'no'])
  first = run.models[0].metrics
  floors = [_get(first, 'floors.random_map', first.get('random_map')),
            _get(first, 'floors.raw_pixels_map', first.get('raw_pixels_map'))]
  rows.append(['chance / random ranking', _pct(first.get('chance_accuracy')),
               _pct(first.get('chance_accuracy')), '', '', _num(floors[0]), '', '', ''])
  rows.append(['raw 128x128 pixels (L2)', '', '', '', '', _num(floors[1]), '', '', ''])
  return _table(['model', 'train top-1', 'test top-1', 'train top-5', 'test top-5',
                 'mAP (L2)', 'P@10 (L2)', 'mAP (cosine, extra)', 'pushed'], rows)


def _per_category_table(model: ModelResults, count: int = 10) -> str:
  per_class = _get(model.metrics, 'classification.test.per_class') or {}
  per_ap = _get(model.metrics, 'retrieval.l2.per_category_ap') or {}
  scored = [(c, per_ap.get(c), _get(per_class, f'{c}.accuracy')) for c in per_ap
            if per_ap.get(c) is not None]
  if not scored:
    return ''
  scored.sort(key=lambda row: (-row[1], row[0]))
  shown = scored if len(scored) <= 2 * count else scored[:count] + [None] + scored[-count:]
  rows = [['...', '', ''] if row is None else [row[0], _num(row[1]), _pct(row[2])]
          for row in shown]
  return _table(['category (best AP first)', 'AP (L2)', 'test accuracy'], rows)


def confusion_pairs(model: ModelResults, count: int = 8) -> List[Tuple[str, str, int, int]]:
  """(true, predicted, drawings, true's test drawings) of the most frequent confusions."""
  matrix = _get(model.metrics, 'classification.test.confusion_matrix')
  names = _get(model.metrics, 'classification.categories')
  if not matrix or not names:
    return []
  matrix = np.asarray(matrix)
  pairs = [(names[t], names[p], int(matrix[t, p]), int(matrix[t].sum()))
           for t in range(len(names)) for p in range(len(names)) if t != p and matrix[t, p]]
  return sorted(pairs, key=lambda x: (-x[2], x[0], x[1]))[:count]


def _wall_time_table(run: RunResults) -> str:
  nodes = sorted(run.nodes.values(), key=lambda n: n.start_time)
  rows = [[n.node_id, n.state.lower(), f'{n.seconds:.0f}'] for n in nodes]
  total = (max(n.end_time for n in nodes) - min(n.start_time for n in nodes)) if nodes else 0
  rows.append(['**whole run**', '', f'**{total:.0f}**'])
  return _table(['component', 'state', 'wall time (s)'], rows)


def _manifest_table(manifest: Dict[str, Any]) -> str:
  per_category = manifest.get('categories') or {}
  if isinstance(per_category, list):  # A list of rows with a 'category' key.
    per_category = {row.get('category', str(i)): row for i, row in enumerate(per_category)}
  if not isinstance(per_category, dict) or not per_category:
    return ''
  keys = []
  for row in per_category.values():
    for key, value in row.items():
      if key != 'category' and isinstance(value, (int, float)) and key not in keys:
        keys.append(key)
  rows = [[name] + [row.get(k, '') for k in keys] for name, row in sorted(per_category.items())]
  if len(rows) > MANIFEST_ROWS:  # 100 rows are not read: totals and the spread instead.
    columns = [[row.get(k) for row in per_category.values() if row.get(k) is not None]
               for k in keys]
    rows = [[f'all {len(rows)} (sum)'] + [sum(c) if c else '' for c in columns],
            ['smallest per category'] + [min(c) if c else '' for c in columns],
            ['largest per category'] + [max(c) if c else '' for c in columns]]
  return _table(['category'] + keys, rows)


def _better(run: RunResults, key: str) -> Optional[Tuple[ModelResults, ModelResults]]:
  """(better, worse) by `key` when both models have it and they differ, else None."""
  if len(run.models) < 2:
    return None
  values = [(_get(m.metrics, key), m) for m in run.models[:2]]
  if any(v is None for v, _ in values) or values[0][0] == values[1][0]:
    return None
  ordered = sorted(values, key=lambda vm: -vm[0])
  return ordered[0][1], ordered[1][1]


def _abstract(run: RunResults) -> str:
  s = run.sampling
  parts = [f'This report describes pipeline run `{run.run_id}` of `{run.pipeline_name}`: '
           f'{s.get("num_categories", "?")} Quick, Draw! categories with '
           f'{s.get("train_per_category", "?")} training and {s.get("test_per_category", "?")} '
           f'test drawings each (seed {s.get("seed", "?")}), sketches at '
           f'{run.image_size}x{run.image_size}.']
  for m in run.models:
    parts.append(f'{m.name} reached {_pct(m.metrics.get("test_accuracy"))} test accuracy '
                 f'(train {_pct(m.metrics.get("train_accuracy"))}) and a leave-one-out '
                 f'retrieval mAP of {_num(m.metrics.get("map"))} with its fc_1 embeddings.')
  random_map = _get(run.models[0].metrics, 'floors.random_map')
  if random_map is not None:
    parts.append(f'A random ranking scores an mAP of {_num(random_map)} on the same queries.')
  budget = _budget_sentence(run)
  if budget:
    parts.append(budget)
  return ' '.join(parts)


def _discussion(run: RunResults) -> List[str]:
  """Statements that the measured values support, one per bullet."""
  points = []
  for key, label in (('test_accuracy', 'test accuracy'), ('map', 'retrieval mAP (L2)'),
                     ('test_top5_accuracy', 'top-5 test accuracy'),
                     ('map_cosine', 'retrieval mAP with cosine distance')):
    better = _better(run, key)
    if better:
      points.append(f'{better[0].name} is ahead of {better[1].name} on {label}: '
                    f'{_metric_text(better[0], key)} against {_metric_text(better[1], key)}.')
  wins = run.comparison.get('wins') or {}
  if wins and run.comparison.get('models'):
    first, second = run.comparison['models'][:2]
    points.append(f'Over all {sum(wins.values())} compared metrics (ModelComparison, floors '
                  f'excluded), {first} is better on {wins.get(first, 0)}, {second} on '
                  f'{wins.get(second, 0)}, and {wins.get("tie", 0)} are tied.')
  for m in run.models:
    train, test = m.metrics.get('train_accuracy'), m.metrics.get('test_accuracy')
    if train is not None and test is not None:
      gap = train - test
      verdict = ('a gap that points to overfitting' if gap > 0.1 else
                 'close: no sign of overfitting at this training budget')
      points.append(f'{m.name}: train accuracy {_pct(train)}, test {_pct(test)}, {verdict} '
                    f'({gap * 100:+.1f} points).')
    raw = _get(m.metrics, 'floors.raw_pixels_map')
    random_map = _get(m.metrics, 'floors.random_map')
    if m.metrics.get('map') is not None and random_map is not None:
      text = (f'{m.name}\'s fc_1 embeddings retrieve at mAP {_num(m.metrics["map"])}, '
              f'{m.metrics["map"] / random_map:.1f}x the random ranking ({_num(random_map)})')
      if raw is not None:
        text += (f' and {m.metrics["map"] / raw:.1f}x raw pixels ({_num(raw)}): the learned '
                 'features carry the category far better than the pictures themselves'
                 if m.metrics['map'] > raw else
                 f'; raw pixels ({_num(raw)}) do as well or better, so the embedding adds '
                 'little beyond the picture')
      points.append(text + '.')
    l2, cosine = m.metrics.get('map'), m.metrics.get('map_cosine')
    if l2 is not None and cosine is not None and abs(l2 - cosine) >= 0.005:
      points.append(f'{m.name}: cosine distance on normalised embeddings gives mAP '
                    f'{_num(cosine)}, {"better" if cosine > l2 else "worse"} than L2 '
                    f'({_num(l2)}).')
    pairs = confusion_pairs(m, 3)
    if pairs:
      listed = '; '.join(f'{t} taken for {p} ({n} of {total})' for t, p, n, total in pairs)
      points.append(f'{m.name}\'s most frequent confusions on the test split: {listed}.')
    per_ap = _get(m.metrics, 'retrieval.l2.per_category_ap') or {}
    scored = sorted((v, c) for c, v in per_ap.items() if v is not None)
    if len(scored) >= 2:
      points.append(f'{m.name} retrieves {scored[-1][1]} best (AP {_num(scored[-1][0])}) and '
                    f'{scored[0][1]} worst (AP {_num(scored[0][0])}).')
  return points


def _metric_text(model: ModelResults, key: str) -> str:
  value = _get(model.metrics, key)
  return _pct(value) if 'accuracy' in key else _num(value)


def _lead(run: RunResults, key: str) -> Tuple[Optional[str], Optional[bool]]:
  """(the model ahead on `key`, whether its lead exceeds the 95% interval: the paired interval
  of the difference when there is one, else non-overlapping intervals; None when unknown)."""
  better = _better(run, key)
  if not better:
    return None, None
  row = (run.comparison.get('paired_difference') or {}).get(key) or {}
  if row.get('excludes_zero') is not None:
    return better[0].name, bool(row['excludes_zero'])
  first, second = better[0].metrics.get(f'{key}_ci95'), better[1].metrics.get(f'{key}_ci95')
  if first is None or second is None:
    return better[0].name, None
  return better[0].name, first[0] > second[1]


def _conclusions(run: RunResults) -> List[str]:
  points = []
  leads = {label: _lead(run, key) for key, label in (('test_accuracy', 'classification'),
                                                     ('map', 'similarity search'))}
  names = {name for name, _ in leads.values() if name}
  if len(names) == 1 and all(significant for _, significant in leads.values()):
    points.append(f'In this run {names.pop()} is the better model for both classification and '
                  'similarity search, by more than the uncertainty of the test set.')
  else:
    for label, (name, significant) in leads.items():
      if name is None:
        continue
      margin = {True: ', by more than the uncertainty of the test set.',
                False: ', within the uncertainty of the test set: no winner on this data.',
                None: ' (no interval recorded to judge the margin).'}[significant]
      points.append(f'{name} is ahead on {label}{margin}')
  full = config_lib.PROFILES['full']
  s = run.sampling
  reached = {m.name: m.history.get('epochs_reached') for m in run.models}
  budget = ', '.join(f'{n}: {e:.2f} epochs' if e is not None
                     else f'{n}: {run.models[i].training.get("epochs")} epochs'
                     for i, (n, e) in enumerate(reached.items()))
  short_data = s.get('train_per_category') and s['train_per_category'] < full.train_per_category
  short_training = any(e is not None and e < full.training[MODEL_NAMES_FIRST].epochs
                       for e in reached.values())
  if short_data or short_training:
    points.append(f'The run used {s.get("train_per_category", "?")} training drawings per '
                  f'category and trained {budget}; the specification\'s `full` profile trains '
                  f'{full.num_categories} categories x {full.train_per_category} drawings for '
                  f'{full.training[MODEL_NAMES_FIRST].epochs} epochs. The numbers describe this '
                  'budget, not what the architectures reach trained to convergence.')
  points += _difference_statements(run)
  pushed = [m.name for m in run.models if m.pushed_to]
  points.append(f'Pushed to the model registry: {", ".join(pushed) if pushed else "none"}'
                ' (models that met the blessing thresholds).')
  return points


def _difference_statements(run: RunResults) -> List[str]:
  """Whether each headline difference between the two models exceeds its uncertainty: from
  ModelComparison's paired interval when present, else from the two models' own intervals."""
  if len(run.models) < 2:
    return []
  paired = run.comparison.get('paired_difference') or {}
  points = []
  for key, label, percent in (('test_accuracy', 'test accuracy', True),
                              ('map', 'retrieval mAP (L2)', False)):
    row = paired.get(key) or {}
    if row.get('ci95') is not None and row.get('difference') is not None:
      first, second = run.comparison['models'][:2]
      difference = (f'{row["difference"] * 100:+.1f} points' if percent
                    else f'{row["difference"]:+.3f}')
      text = (f'{label[0].upper() + label[1:]}, {first} minus {second}: {difference}, 95% '
              'paired bootstrap interval '
              f'{confidence.format_bounds(row["ci95"], percent, signed=True)} over '
              f'{row["units"]} {"test drawings" if percent else "queries"}; ')
      if row['excludes_zero']:
        leader = first if row['difference'] > 0 else second
        text += (f'the interval excludes 0, so {leader}\'s lead is larger than what the choice '
                 'of test drawings explains.')
      else:
        text += ('the interval includes 0, so this test set does not tell the two models apart '
                 f'on {label}.')
      points.append(text)
      continue
    values = [(m, m.metrics.get(key), m.metrics.get(f'{key}_ci95')) for m in run.models[:2]]
    if any(v is None or ci is None for _, v, ci in values):
      continue  # No interval recorded (a run made before schema 3).
    (a, _, ia), (b, _, ib) = sorted(values, key=lambda x: -x[1])
    bounds = lambda ci: confidence.format_bounds(ci, percent)
    if ia[0] > ib[1]:
      points.append(f'On {label}, {a.name}\'s 95% interval {bounds(ia)} lies entirely above '
                    f'{b.name}\'s {bounds(ib)}: the difference exceeds the sampling '
                    'uncertainty of this test set.')
    else:
      points.append(f'On {label}, the 95% intervals of {a.name} {bounds(ia)} and {b.name} '
                    f'{bounds(ib)} overlap: they do not show that the models differ (the paired '
                    'interval of the difference, which ModelComparison computes when given both '
                    'models\' embeddings, is sharper).')
  return points


def _comparison_headline(run: RunResults) -> str:
  """The comparison's summary and headline table, its headings moved below this section's; the
  table of every metric stays in the artifact (named here)."""
  text = run.comparison_md.split('\n## Every metric')[0]
  kept = [line for line in text.strip().splitlines() if not line.startswith('#')]
  uri = run.nodes['ModelComparison'].outputs['comparison'][0].uri
  return '\n'.join(kept + ['', f'Every metric, side by side: `{uri}/comparison.md`.'])


def _training_table(run: RunResults) -> str:
  """Each model's training settings (the Trainer's custom_config), one column per model."""
  keys = sorted({k for m in run.models for k in m.training} - {'model_name', 'seed'})
  rows = [[k.replace('_', ' ')] + [m.training.get(k, '') for m in run.models] for k in keys]
  return _table(['training setting'] + [m.name for m in run.models], rows)


def _training_run_table(run: RunResults) -> str:
  """What each Trainer did with its settings (history.json): precision, steps, epochs reached."""
  rows = []
  for label, key, show in (
      ('precision', 'precision', str),
      ('why', 'precision_reason', str),
      ('time budget', 'time_budget_minutes', lambda v: f'{v:g} min' if v else 'none'),
      ('stopped by the budget', 'stopped_by_time_budget', lambda v: 'yes' if v else 'no'),
      ('training steps', 'steps', lambda v: f'{v:,}'),
      ('drawings trained on', 'images_seen', lambda v: f'{v:,}'),
      ('epochs reached', 'epochs_reached', lambda v: f'{v:.2f}'),
      ('training time', 'training_seconds', lambda v: f'{v / 60:.1f} min'),
      ('images/s (per epoch)', 'images_per_second',
       lambda v: ', '.join(f'{x:.1f}' for x in v)),
      ('after fit (BatchNorm re-estimation, export)', 'post_fit_seconds', lambda v: f'{v:.0f} s'),
      ('resumed from step', 'resumed_from_step', lambda v: f'{v:,}' if v else 'no resume')):
    if any(m.history.get(key) is not None for m in run.models):
      rows.append([label] + [show(m.history[key]) if m.history.get(key) is not None else ''
                             for m in run.models])
  if not rows:
    return ''
  return _table(['training as it ran'] + [m.name for m in run.models], rows)


def _budget_sentence(run: RunResults) -> str:
  """Whether the two models had the same training budget, from their settings and histories."""
  budgets = {(m.training.get('epochs'), m.training.get('time_budget_minutes') or 0)
             for m in run.models}
  if len(run.models) < 2:
    return ''
  reached = ', '.join(f'{m.name} {m.history["epochs_reached"]:.2f}' for m in run.models
                      if m.history.get('epochs_reached') is not None)
  if len(budgets) > 1:
    return ('The models had different training budgets (' + '; '.join(
        f'{m.name}: {m.training.get("epochs")} epochs'
        + (f' or {m.training["time_budget_minutes"]:g} minutes'
           if m.training.get('time_budget_minutes') else '') for m in run.models)
        + '), so the comparison is not on equal footing.')
  epochs, minutes = budgets.pop()
  budget = (f'{minutes:g} minutes of training (at most {epochs} epochs)' if minutes
            else f'{epochs} epochs')
  return (f'Both models had the same training budget: {budget}'
          + (f'; epochs reached: {reached}.' if reached else '.'))


def _shown_source(source: str) -> str:
  """A URL as given; a local folder by its last two names (not the writing machine's path)."""
  if '://' in source or not os.path.isabs(source):
    return f'`{source}`'
  return f'a local folder `.../{"/".join(os.path.normpath(source).split(os.sep)[-2:])}`'


def _shown_path(metadata_path: str) -> str:
  """The store's path below the output directory (metadata/<pipeline>/metadata.sqlite): the
  report names no folder of the machine that wrote it."""
  parts = os.path.normpath(metadata_path).split(os.sep)
  return '/'.join(parts[-3:])


def render_markdown(run: RunResults, figures: Dict[str, str]) -> str:
  """The report; `figures` maps a figure's name to its path relative to the report."""
  s = run.sampling
  out = [f'# Quick, Draw! sketch classification and similarity search: run {run.run_id}', '',
         f'Generated {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} from ML Metadata '
         f'(`{_shown_path(run.metadata_path)}` in the run\'s output directory). {_DATA_CREDIT}',
         '',
         '## Abstract', '', _abstract(run), '',
         '## Introduction', '',
         'Quick, Draw! holds millions of sketches that players drew in under 20 seconds for one of '
         '345 categories. Two convolutional networks from the specification, skNet (VGG-like) '
         'and skResNet (residual), learn to classify them; their 1024-d fc_1 layer then serves '
         'as an embedding for sketch similarity search. Classification is measured by top-1 and '
         'top-5 accuracy; search by leave-one-out mean Average Precision: every test drawing '
         'queries all the other test drawings by L2 distance, and results of its own category '
         'are relevant.', '',
         '## Development', '',
         'A TFX pipeline (local Beam runner, SQLite ML Metadata) did the work: QuickDrawExampleGen '
         'sampled and rendered the drawings, StatisticsGen and ExampleValidator checked them '
         'against the curated schema and Transform resized them; then each model had its own '
         'Trainer, which fitted it, its own EmbeddingEvaluator, which measured it and decided '
         'its blessing, and its own Pusher, which exported it to the registry when blessed; '
         'ModelComparison set the two models\' metrics side by side.', '',
         f'- Source: {_shown_source(s.get("source", "?"))}; seed {s.get("seed", "?")}; '
         f'{s.get("num_categories", "?")} categories x ({s.get("train_per_category", "?")} train + '
         f'{s.get("test_per_category", "?")} test) drawings.']
  out += ['', _training_table(run), '']
  budget = _budget_sentence(run)
  if budget:
    out += [budget, '']
  training_run = _training_run_table(run)
  if training_run:
    out += [training_run, '']
  if 'samples' in figures:
    out += [f'![Sample drawings]({figures["samples"]})', '']
  manifest = _manifest_table(run.manifest)
  if manifest:
    many = len(run.manifest.get('categories') or ()) > MANIFEST_ROWS
    out += [('Sampling, over the categories (each one in the ExampleGen\'s manifest.json):'
             if many else 'Sampling, per category (from the ExampleGen\'s manifest):'), '',
            manifest, '']
  out += ['Wall time per component:', '', _wall_time_table(run), '']
  if 'wall_time' in figures:
    out += [f'![Wall time per component]({figures["wall_time"]})', '']

  floors = ('Floors: chance accuracy is 1 / categories; the random-ranking mAP is the expected '
            'mAP of a random order of the other test drawings; raw pixels rank by L2 distance '
            'between the 128x128 images themselves.')
  out += ['## Results and discussion', '', _headline_table(run), '',
          ' '.join(t for t in (_interval_note(run), floors) if t), '']
  if 'learning_curves' in figures:
    out += ['### Learning curves', '', f'![Learning curves]({figures["learning_curves"]})', '']
  if 'pr_curves' in figures:
    out += ['### Retrieval precision-recall', '', f'![PR curves]({figures["pr_curves"]})', '']
  if 'per_category' in figures:
    out += ['### Every category, both models', '',
            f'![Per-category accuracy and AP]({figures["per_category"]})', '']
  for m in run.models:
    table = _per_category_table(m)
    if table:
      out += [f'### {m.name}: per category (test split)', '', table, '']
    if f'confusion_{m.name}' in figures:
      out += [f'![Confusion matrix, {m.name}]({figures[f"confusion_{m.name}"]})', '']
      note = report_figures.heatmap_note(len(_get(m.metrics, 'classification.categories') or ()))
      out += [note, ''] if note else []
    pairs = confusion_pairs(m)
    if pairs:
      out += [f'Most frequent confusions of {m.name}:', '',
              _table(['true category', 'predicted as', 'drawings', 'of'],
                     [list(p) for p in pairs]), '']
    if f'retrieval_{m.name}' in figures:
      out += [f'![Retrieval examples, {m.name}]({figures[f"retrieval_{m.name}"]})', '']
  if run.comparison_md:
    out += ['### The two models side by side (ModelComparison)', '', _comparison_headline(run), '']
  out += ['### Discussion', ''] + [f'- {p}' for p in _discussion(run)] + ['']
  out += ['## Conclusions', ''] + [f'- {p}' for p in _conclusions(run)] + ['']
  return '\n'.join(out)


# ------------------------------------------------------------------------------------------
# HTML: the Markdown, rendered, with the figures embedded

_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
"""
# Lets a headless browser check the page: after load, <body data-images="loaded/total">.
_IMAGE_CHECK = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images', loaded.length + '/' + images.length);
});
"""


def render_html(markdown_text: str, figure_dir: str, title: str) -> str:
  import markdown  # pylint: disable=g-import-not-at-top
  body = markdown.markdown(markdown_text, extensions=['tables', 'md_in_html'])

  def embed(match):
    path = os.path.join(figure_dir, os.path.basename(html.unescape(match.group(1))))
    with open(path, 'rb') as f:
      return f'src="data:image/png;base64,{base64.b64encode(f.read()).decode()}"'
  body = re.sub(r'src="(%s/[^"]+\.png)"' % FIGURES, embed, body)
  return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<title>{html.escape(title)}</title><style>{_STYLE}</style>'
          f'<script>{_IMAGE_CHECK}</script></head>\n<body>\n{body}\n</body></html>\n')


def write_report(run: RunResults, out_dir: str) -> Tuple[str, str]:
  """Writes report.md, figures/ and report.html into `out_dir`; returns both paths."""
  figure_dir = os.path.join(out_dir, FIGURES)
  os.makedirs(figure_dir, exist_ok=True)
  figures = {}

  def add(name, draw, *args):
    path = os.path.join(figure_dir, f'{name}.png')
    if draw(*args, path) is not False:
      figures[name] = f'{FIGURES}/{name}.png'
  add('samples', figure_samples, run)
  add('learning_curves', figure_learning_curves, run)
  add('pr_curves', figure_pr_curves, run)
  order = report_figures.category_order(run.models)  # One order for every per-category figure.
  add('per_category', report_figures.figure_per_category, run.models, order)
  for model in run.models:
    add(f'confusion_{model.name}', report_figures.figure_confusion, model, order)
  for model in run.models:
    add(f'retrieval_{model.name}', figure_retrieval, run, model)
  add('wall_time', figure_wall_time, run)
  text = render_markdown(run, figures)
  md_path = os.path.join(out_dir, REPORT_MD)
  with open(md_path, 'w') as f:
    f.write(text)
  html_path = os.path.join(out_dir, REPORT_HTML)
  with open(html_path, 'w') as f:
    f.write(render_html(text, figure_dir, f'quickdraw-tfx run {run.run_id}'))
  return md_path, html_path


def default_out_dir(config: config_lib.PipelineConfig, run_id: str) -> str:
  return os.path.join(config.output_dir, 'reports', re.sub(r'[^\w.-]+', '_', run_id))


def build(config: config_lib.PipelineConfig, run_id: Optional[str] = None,
          out_dir: Optional[str] = None) -> Tuple[str, str]:
  """Collects run `run_id` (default: the latest) of `config`'s pipeline and writes its report."""
  run = collect(config.metadata_path, config.pipeline_name, run_id)
  return write_report(run, out_dir or default_out_dir(config, run.run_id))


# ------------------------------------------------------------------------------------------
# The `report` subcommand


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      'report', help='write the experiment report of a run (Markdown + HTML)',
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--profile', choices=config_lib.profile_names(),
                      help='whose pipeline (default: the config file\'s, else default)')
  parser.add_argument('--config', metavar='YAML', help='the settings file the run used')
  parser.add_argument('--output-dir', help='the run\'s output folder (default: outputs/)')
  parser.add_argument('--run-id', help='a pipeline run id (default: the latest run)')
  parser.add_argument('--out', help='report folder (default: <output-dir>/reports/<run id>)')
  parser.set_defaults(func=report_command)


def report_command(args) -> int:
  try:
    config = config_lib.load(args.profile, args.config)
  except ValueError as e:
    print(f'quickdraw-tfx report: error: {e}', file=sys.stderr)
    return 2
  if args.output_dir:
    config = config.replace(output_dir=args.output_dir)
  try:
    md_path, html_path = build(config, args.run_id, args.out)
  except (LookupError, FileNotFoundError) as e:
    print(f'quickdraw-tfx report: {e}', file=sys.stderr)
    return 1
  print(f'Report: {os.path.abspath(html_path)}\n        {os.path.abspath(md_path)}')
  return 0
