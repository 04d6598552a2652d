"""The report's figures (matplotlib, written as PNG) from a `RunResults`.

`draw` writes every figure the run's data allows: the pipeline's DAG (report_dag), drawings
(report_drawing_figures), training curves against the images trained on, retrieval precision-recall,
the per-category figures (report_category_figures), retrieval examples and wall time. Each
figure function returns False when the run recorded nothing to draw.
"""
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from pipeline import report_category_figures
from pipeline import report_dag
from pipeline import report_data
from pipeline import report_drawing_figures
from pipeline.report_category_figures import pyplot, save
from pipeline.report_data import get_path


def _training_curve(model: report_data.ModelResults) -> Dict[str, List[float]]:
  """{'images': [...], 'loss': [...], 'accuracy': [...], 'learning_rate': [...], 'val_...'}:
  the Trainer's points every few thousand images when recorded (history.json's 'curve'), else
  its epoch rows, placed at the images trained on at each epoch's end."""
  curve = model.history.get('curve') or {}
  epochs = model.history.get('history') or {}
  reached = model.history.get('epochs_reached') or 0
  per_epoch = model.history.get('training_examples') or (
      round(model.history.get('images_seen', 0) / reached) if reached else 0)
  lengths = [len(v) for v in epochs.values() if isinstance(v, list)]
  # Where each epoch row was logged: at an epoch's end, the last one where training stopped
  # (a budget can end inside an epoch).
  ends = [per_epoch * (e + 1) for e in range(max(lengths, default=0))]
  if ends and model.history.get('images_seen'):
    ends[-1] = min(ends[-1], model.history['images_seen'])
  columns: Dict[str, List[float]] = {}
  if len(curve.get('images') or []) >= 2:
    columns = {k: list(v) for k, v in curve.items() if k != 'step'}
  elif ends and per_epoch:
    columns = {'images': ends,
               **{k: list(v) for k, v in epochs.items() if not k.startswith('val_')}}
  if columns and per_epoch:  # Validation is measured at epoch ends only.
    for key in ('val_loss', 'val_accuracy'):
      if isinstance(epochs.get(key), list):
        columns[key] = list(epochs[key])
        columns[key + '_images'] = ends[:len(epochs[key])]
  return columns


def figure_learning_curves(run: report_data.RunResults, path: str) -> bool:
  """Training loss, accuracy and learning rate against the images trained on."""
  curves = [(m, _training_curve(m)) for m in run.models if m.history]
  curves = [(m, c) for m, c in curves if c]
  if not curves:
    return False
  rates = any(c.get('learning_rate') for _, c in curves)
  plt = pyplot()
  figure, axes = plt.subplots(1, 3 if rates else 2, figsize=(14 if rates else 10, 3.6))
  for m, curve in curves:
    images = curve['images']
    for ax, key in zip(axes, ('loss', 'accuracy', 'learning_rate')):
      if len(curve.get(key) or []) == len(images):
        ax.plot(images, curve[key], marker='o', markersize=2.5, label=f'{m.title} training')
      validation = curve.get(f'val_{key}')
      if validation:
        ax.plot(curve[f'val_{key}_images'], validation, '--', marker='s', markersize=3,
                label=f'{m.title} validation')
    if m.metrics.get('test_accuracy') is not None:  # The gap to the training curve.
      axes[1].axhline(m.metrics['test_accuracy'], ls=':', lw=1.2,
                      color='0.3' if m is run.models[0] else '0.6',
                      label=f'{m.title} test accuracy (Evaluator)')
  if rates:
    axes[2].ticklabel_format(axis='y', style='sci', scilimits=(0, 0))
  titles = ['training loss', 'training accuracy', 'learning rate']
  for ax, title in zip(axes, titles):
    ax.set_xlabel('images trained on')
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  save(figure, path)
  return True


def figure_pr_curves(run: report_data.RunResults, path: str) -> bool:
  curves = []
  for model in run.models:
    for distance, style in (('l2', '-'), ('cosine', ':')):
      curve = get_path(model.metrics, f'retrieval.{distance}.pr_curve_11pt')
      if curve and curve.get('precision') and None not in curve['precision']:
        label = f'{model.title}, {"L2" if distance == "l2" else "cosine (extra)"}'
        curves.append((curve, style, label))
  if not curves:
    return False
  plt = pyplot()
  figure, ax = plt.subplots(figsize=(5.5, 4.2))
  for curve, style, label in curves:
    ax.plot(curve['recall'], curve['precision'], style, marker='o', markersize=3, label=label)
  random_map = get_path(run.models[0].metrics, 'floors.random_map')
  if random_map is not None:
    ax.axhline(random_map, color='gray', lw=0.8, label='random ranking (mAP)')
  ax.set_xlabel('recall')
  ax.set_ylabel('interpolated precision')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  points = len(curves[0][0]['recall'])
  ax.set_title(f'Leave-one-out retrieval, test split ({points}-point PR)', fontsize=10)
  save(figure, path)
  return True


def retrieval_examples(model: report_data.ModelResults, queries: int = 6, k: int = 10,
                       order: Sequence[str] = ()) -> List[Tuple[int, List[int]]]:
  """Rows (query index, its k nearest other drawings from the Evaluator's neighbour lists),
  one query per category: the category's first drawing by id. With `order` (categories,
  easiest first), categories evenly spaced from the easiest to the hardest; else the first
  by name."""
  categories = model.per_query['category']
  ids = model.per_query['id']
  first = {}
  for index in np.argsort(ids, kind='stable'):
    first.setdefault(categories[index], int(index))
  ranked = [c for c in order if c in first]
  if ranked and len(ranked) > queries:
    picks = sorted({round(i * (len(ranked) - 1) / max(queries - 1, 1)) for i in range(queries)})
    ranked = [ranked[i] for i in picks]
  chosen = [first[c] for c in (ranked or sorted(first))[:queries]]
  neighbours = model.per_query['neighbors_l2']
  return [(query, [int(j) for j in neighbours[query][:k] if j >= 0]) for query in chosen]


def figure_retrieval(run: report_data.RunResults, model: report_data.ModelResults,
                     path: str) -> bool:
  order = report_category_figures.category_order(run.models)
  rows = retrieval_examples(model, order=order)
  ranked = bool(set(order) & set(model.per_query['category'].tolist()))
  if not rows:
    return False
  ids, categories = model.per_query['id'], model.per_query['category']
  k = max(len(found) for _, found in rows)
  plt = pyplot()
  figure, axes = plt.subplots(len(rows), k + 1, squeeze=False,
                              figsize=(1.25 * (k + 1), 1.45 * len(rows)))
  for row, (query, found) in enumerate(rows):
    pictures = report_drawing_figures.as_model_input(
        [run.test_drawings[ids[i]][1] for i in [query] + found], run.image_size)
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
  figure.suptitle(f'{model.title}: each query (left) and its {k} nearest test drawings by L2 on '
                  'fc_1; red = wrong category'
                  + ('; queries from the easiest category (top) to the hardest' if ranked
                     else ''),
                  fontsize=9)
  save(figure, path)
  return True


def figure_wall_time(run: report_data.RunResults, path: str) -> bool:
  nodes = sorted(run.nodes.values(), key=lambda n: n.start_time)
  if not nodes:
    return False
  plt = pyplot()
  figure, ax = plt.subplots(figsize=(7, 0.32 * len(nodes) + 0.8))
  labels = [f'{n.node_id}{" (cached)" if n.state == "CACHED" else ""}' for n in nodes]
  ax.barh(range(len(nodes)), [n.seconds for n in nodes], color='tab:blue')
  ax.set_yticks(range(len(nodes)), labels, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel('wall time (s)')
  ax.grid(axis='x', alpha=0.3)
  save(figure, path)
  return True


def draw(run: report_data.RunResults, out_dir: str, folder: str) -> Dict[str, str]:
  """Writes the run's figures into `out_dir/folder`; returns each drawn figure's name and its
  path relative to `out_dir` (`confusion_<model>` and `retrieval_<model>` per model)."""
  os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
  figures = {}

  def add(name, draw_figure, *args):
    relative = f'{folder}/{name}.png'
    if draw_figure(*args, os.path.join(out_dir, relative)):
      figures[name] = relative
  add('pipeline_dag', report_dag.figure_dag, run.nodes)
  add('samples', report_drawing_figures.figure_samples, run)
  add('learning_curves', figure_learning_curves, run)
  add('pr_curves', figure_pr_curves, run)
  # One category order for every per-category figure.
  order = report_category_figures.category_order(run.models)
  add('per_category', report_category_figures.figure_per_category, run.models, order)
  add('category_extremes', report_drawing_figures.figure_extremes, run, order)
  for model in run.models:
    add(f'confusion_{model.name}', report_category_figures.figure_confusion, model, order)
    add(f'confused_{model.name}', report_drawing_figures.figure_confusions, run, model)
  for model in run.models:
    add(f'retrieval_{model.name}', figure_retrieval, run, model)
  add('wall_time', figure_wall_time, run)
  return figures
