"""The EmbeddingEvaluator's outputs read back: metrics.json in the evaluation artifact and the
per-drawing arrays in the embeddings artifact (schemas: docs/metrics.md). Light: the Pusher,
ModelComparison and the report read these without loading TFMA."""
import io
import json
import os
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

METRICS_FILE = 'metrics.json'
EMBEDDINGS_FILE = 'test_embeddings.npz'
SCHEMA_VERSION = 4  # 3: the *_ci95 intervals; 4: TFMA's values, validation and baseline.
# Metrics copied onto the evaluation and blessing artifacts, so ML Metadata queries see them.
HEADLINE_METRICS = ('train_accuracy', 'test_accuracy', 'map')
# Also copied onto both artifacts (when defined); the model card keeps to HEADLINE_METRICS.
EXTRA_PROPERTIES = ('train_top5_accuracy', 'test_top5_accuracy', 'map_cosine', 'random_map',
                    'raw_pixels_map')
# 95% bootstrap intervals [low, high] (or null) of headline metrics (confidence.py).
INTERVALS = ('train_accuracy_ci95', 'test_accuracy_ci95', 'train_top5_accuracy_ci95',
             'test_top5_accuracy_ci95', 'map_ci95')


def read_metrics(evaluation_uri: str) -> Dict:
  """The metrics JSON in an evaluation artifact's folder."""
  with tf.io.gfile.GFile(os.path.join(evaluation_uri, METRICS_FILE)) as f:
    return json.load(f)


def load_per_query(artifact_uri: str) -> Dict[str, np.ndarray]:
  """Every array of the embeddings artifact (docs/metrics.md, section 2) by name."""
  with tf.io.gfile.GFile(os.path.join(artifact_uri, EMBEDDINGS_FILE), 'rb') as f:
    with np.load(io.BytesIO(f.read())) as data:
      return {key: data[key] for key in data.files}


def load_embeddings(artifact_uri: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(embedding, category, id) arrays as written by the evaluator."""
  data = load_per_query(artifact_uri)
  return data['embedding'], data['category'], data['id']
