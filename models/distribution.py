"""Which tf.distribute strategy the Trainer runs under, and which worker writes the outputs."""
import json
import os

import tensorflow as tf


def strategy_for_environment() -> tf.distribute.Strategy:
  """MultiWorkerMirrored when TF_CONFIG names a cluster of several tasks; Mirrored over this
  machine's devices when it has several (GPUs, else logical CPU devices, as configured with
  tf.config.set_logical_device_configuration); else the default strategy (one device)."""
  cluster = json.loads(os.environ.get('TF_CONFIG') or '{}').get('cluster', {})
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  devices = tf.config.list_logical_devices('GPU') or tf.config.list_logical_devices('CPU')
  if len(devices) > 1:
    # Each replica takes batch_size / replicas of every (global) batch; gradients are summed
    # across them before the update.
    return tf.distribute.MirroredStrategy([device.name for device in devices])
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == 'chief':
    return True
  return resolver.task_type == 'worker' and resolver.task_id == 0 and (
      'chief' not in resolver.cluster_spec().as_dict())
