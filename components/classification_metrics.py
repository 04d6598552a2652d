"""Classification metrics of one split with scikit-learn: the `classification.<split>` section.

Schema in docs/metrics.md. Categories are the model's label vocabulary; a true category the
model does not know (not in its vocabulary) counts as wrong everywhere and is in `unknown`.
"""
from typing import Dict, Optional, Sequence

import numpy as np
from sklearn import metrics as sk_metrics

TOP_K = 5


def top_k_accuracy(true_ids: np.ndarray, probabilities: np.ndarray, k: int) -> float:
  """Share of rows whose true id is among the k most probable; ids < 0 (unknown) are misses."""
  known = true_ids >= 0
  num_classes = probabilities.shape[1]
  if not known.any():
    return 0.0
  if k >= num_classes:
    hits = int(known.sum())
  else:
    hits = int(sk_metrics.top_k_accuracy_score(
        true_ids[known], probabilities[known], k=k, labels=np.arange(num_classes),
        normalize=False))
  return hits / len(true_ids)


def _fraction_or_none(value: float, defined: bool) -> Optional[float]:
  return float(value) if defined else None


def split_metrics(true: Sequence[str], predicted: Sequence[str], probabilities: np.ndarray,
                  categories: Sequence[str]) -> Dict:
  """top1, top5, macro precision/recall/F1, per-class numbers and the confusion matrix."""
  true, predicted = np.asarray(true), np.asarray(predicted)
  categories = list(categories)
  probabilities = np.asarray(probabilities)
  if probabilities.shape != (len(true), len(categories)):
    raise ValueError(f'probabilities {probabilities.shape} do not match {len(true)} examples x '
                     f'{len(categories)} categories')
  index = {category: i for i, category in enumerate(categories)}
  true_ids = np.array([index.get(c, -1) for c in true], dtype=np.int64)
  # Macro averages over the categories present in the split (true or predicted).
  macro_precision, macro_recall, macro_f1, _ = sk_metrics.precision_recall_fscore_support(
      true, predicted, average='macro', zero_division=0)
  precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
      true, predicted, labels=categories, average=None, zero_division=0)
  per_class = {
      category: {'accuracy': _fraction_or_none(recall[i], support[i] > 0),
                 'precision': float(precision[i]), 'f1': float(f1[i]),
                 'support': int(support[i])}
      for i, category in enumerate(categories)}
  return {
      'examples': int(len(true)),
      'top1': float(sk_metrics.accuracy_score(true, predicted)),
      'top5': top_k_accuracy(true_ids, probabilities, TOP_K),
      'macro_precision': float(macro_precision),
      'macro_recall': float(macro_recall),
      'macro_f1': float(macro_f1),
      'per_class': per_class,
      'confusion_matrix': sk_metrics.confusion_matrix(true, predicted,
                                                      labels=categories).tolist(),
      'unknown': sorted(set(true[true_ids < 0].tolist())),
  }
