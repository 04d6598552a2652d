"""The report's figures (matplotlib, written as PNG) from a `RunResults`.

`draw` writes every figure the run's data allows: the pipeline's DAG (report_dag), drawings
(report_drawing_figures), learning curves and learning rates, retrieval precision-recall,
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
from pipeline import report_recipe
from pipeline.report_category_figures import pyplot, save
from pipeline.report_data import get_path


def figure_learning_curves(run: report_data.RunResults, path: str) -> bool:
  """Loss and accuracy per epoch, and the learning rate at each epoch's end when recorded."""
  curves = [(m.name, m.history.get('history', {})) for m in run.models if m.history]
  if not curves:
    return False
  rates = [(m.name, report_recipe.epoch_rates(m)) for m in run.models]
  rates = [(name, r) for name, r in rates if r]
  plt = pyplot()
  figure, axes = plt.subplots(1, 3 if rates else 2, figsize=(14 if rates else 10, 3.6))
  loss_ax, acc_ax = axes[0], axes[1]
  if rates:
    for name, values in rates:
      axes[2].plot(range(1, len(values) + 1), values, marker='o', label=name)
    axes[2].set_ylabel('learning rate')
    axes[2].ticklabel_format(axis='y', style='sci', scilimits=(0, 0))
  for name, history in curves:
    for key, values in sorted(history.items()):
      epochs = range(1, len(values) + 1)
      style = '--' if key.startswith('val_') else '-'
      if key.endswith('loss'):
        loss_ax.plot(epochs, values, style, marker='o', label=f'{name} {key}')
      elif key.endswith('accuracy'):
        acc_ax.plot(epochs, values, style, marker='o', label=f'{name} {key}')
  for m in run.models:  # The Evaluator's test accuracy: the gap to the training curve.
    if m.history and m.metrics.get('test_accuracy') is not None:
      acc_ax.axhline(m.metrics['test_accuracy'], ls=':', lw=1.2, color='0.3' if m is
                     run.models[0] else '0.6', label=f'{m.name} test accuracy (Evaluator)')
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  titles = ['loss per epoch', 'accuracy per epoch', 'learning rate at each epoch end']
  epochs = max((len(v) for _, h in curves for v in h.values() if isinstance(v, list)), default=1)
  for ax, title in zip(axes, titles):
    ax.set_xlabel('epoch')
    ax.set_xlim(0.5, epochs + 0.5)
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
  figure.suptitle(f'{model.name}: each query (left) and its {k} nearest test drawings by L2 on '
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
