"""The report's figures (matplotlib, written as PNG) from a `RunResults`.

`draw` writes every figure the run's data allows: sample drawings, learning curves, retrieval
precision-recall, the per-category figures (report_category_figures), retrieval examples and
wall time. Each figure function returns False when the run recorded nothing to draw.
"""
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from pipeline import report_category_figures
from pipeline import report_data
from pipeline.report_category_figures import pyplot, save
from pipeline.report_data import get_path


def _as_model_input(pngs: Sequence[bytes], image_size: int) -> np.ndarray:
  """The drawings exactly as the models see them (the Transform's decode and resize)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from models import preprocessing  # pylint: disable=g-import-not-at-top
  return preprocessing.decode_and_resize(tf.constant(list(pngs)), image_size).numpy()[..., 0]


def figure_samples(run: report_data.RunResults, path: str, categories: int = 6,
                   per_category: int = 5) -> bool:
  by_category: Dict[str, List[bytes]] = {}
  for drawing_id in sorted(run.test_drawings):
    category, png = run.test_drawings[drawing_id]
    by_category.setdefault(category, []).append(png)
  chosen = sorted(by_category)[:categories]
  if not chosen:
    return False
  plt = pyplot()
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
  save(figure, path)
  return True


def figure_learning_curves(run: report_data.RunResults, path: str) -> bool:
  curves = [(m.name, m.history.get('history', {})) for m in run.models if m.history]
  if not curves:
    return False
  plt = pyplot()
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
  save(figure, path)
  return True


def figure_pr_curves(run: report_data.RunResults, path: str) -> bool:
  curves = []
  for model in run.models:
    for distance, style in (('l2', '-'), ('cosine', ':')):
      curve = get_path(model.metrics, f'retrieval.{distance}.pr_curve_11pt')
      if curve and curve.get('precision') and None not in curve['precision']:
        label = f'{model.name}, {"L2" if distance == "l2" else "cosine (extra)"}'
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


def retrieval_examples(model: report_data.ModelResults, queries: int = 6,
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


def figure_retrieval(run: report_data.RunResults, model: report_data.ModelResults,
                     path: str) -> bool:
  rows = retrieval_examples(model)
  if not rows:
    return False
  ids, categories = model.per_query['id'], model.per_query['category']
  k = max(len(found) for _, found in rows)
  plt = pyplot()
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
  figure.suptitle(f'{model.name}: each query (left) and its {k} nearest test drawings by L2 on '
                  'fc_1; red = wrong category', fontsize=9)
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
  add('samples', figure_samples, run)
  add('learning_curves', figure_learning_curves, run)
  add('pr_curves', figure_pr_curves, run)
  # One category order for every per-category figure.
  order = report_category_figures.category_order(run.models)
  add('per_category', report_category_figures.figure_per_category, run.models, order)
  for model in run.models:
    add(f'confusion_{model.name}', report_category_figures.figure_confusion, model, order)
  for model in run.models:
    add(f'retrieval_{model.name}', figure_retrieval, run, model)
  add('wall_time', figure_wall_time, run)
  return figures
