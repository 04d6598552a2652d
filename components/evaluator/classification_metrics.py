"""Classification metrics of one split with scikit-learn: the `classification.<split>` section.

Schema in docs/metrics.md. Categories are the model's label vocabulary; a true category the
model does not know (not in its vocabulary) counts as wrong everywhere and is in `unknown`.
"""
from typing import Dict, Optional, Sequence

import numpy as np
from sklearn import metrics as sk_metrics

TOP_K = 5


def top_k_hits(true_ids: np.ndarray, probabilities: np.ndarray, k: int) -> np.ndarray:
  """Per row, whether the true id is among the k most probable; ids < 0 (unknown) miss.

  Equal probabilities are ordered as scikit-learn's top_k_accuracy_score orders them.
  """
  true_ids = np.asarray(true_ids)
  known = true_ids >= 0
  if k >= probabilities.shape[1]:
    return known
  top = np.argsort(probabilities, axis=1, kind='mergesort')[:, ::-1][:, :k]
  return known & (top == true_ids[:, None]).any(axis=1)


def top_k_accuracy(true_ids: np.ndarray, probabilities: np.ndarray, k: int) -> float:
  """Share of rows whose true id is among the k most probable; ids < 0 (unknown) are misses."""
  return float(top_k_hits(true_ids, probabilities, k).mean()) if len(true_ids) else 0.0


def correct(true: Sequence[str], predicted: Sequence[str], probabilities: np.ndarray,
            categories: Sequence[str]) -> Dict[str, np.ndarray]:
  """Per drawing, 1.0 when right at top-1 and top-5 (the units of the accuracy intervals)."""
  index = {category: i for i, category in enumerate(categories)}
  true_ids = np.array([index.get(c, -1) for c in np.asarray(true)], dtype=np.int64)
  return {'top1': (np.asarray(true) == np.asarray(predicted)).astype(np.float64),
          'top5': top_k_hits(true_ids, np.asarray(probabilities), TOP_K).astype(np.float64)}


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
