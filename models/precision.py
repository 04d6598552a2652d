"""The numeric precision the Trainer computes in, chosen per machine.

On GPUs mixed float16 is the standard speed-up. On CPUs it depends on the hardware: with
bfloat16 instructions (AVX512_BF16, AMX) mixed bfloat16 trained the project's models about
twice as fast as float32 at batch 32 (benchmarks/README.md, "## Precision"); without them it is
slower, and mixed float16 is ~80x slower on CPUs without float16 kernels. So 'auto' picks
mixed float16 on a GPU, and on a CPU with bfloat16 hardware times a few training steps of the
model in both precisions and keeps bfloat16 only when it is measurably faster.
"""
import os
import statistics
import time
from typing import Callable, Dict, FrozenSet, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

SETTINGS = ('auto', 'float32', 'mixed_bfloat16', 'mixed_float16')
# CPU flags (Linux /proc/cpuinfo) of bfloat16 arithmetic in hardware.
BF16_FLAGS = frozenset({'avx512_bf16', 'amx_bf16'})
# bfloat16 must be at least this much faster in the check to be chosen.
MIN_SPEEDUP = 1.15
_CHECK_IMAGE_SIZE = 64
_CHECK_BATCH = 16
_CHECK_ROUNDS = 3


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> FrozenSet[str]:
  """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith('flags'):
          return frozenset(line.split(':', 1)[1].split())
  except OSError:
    pass
  return frozenset()


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'unknown'


def _steps_per_second(build: Callable[[], keras.Model], policy: str, images: np.ndarray,
                      labels: np.ndarray) -> Callable[[], float]:
  """A function timing one round of training steps of `build()` under `policy`."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    model = build()
  finally:
    keras.mixed_precision.set_global_policy(previous)
  model.compile(optimizer=keras.optimizers.Adam(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.train_on_batch(images, labels)  # Traces and warms up.

  def one_round() -> float:
    start = time.perf_counter()
    for _ in range(2):
      model.train_on_batch(images, labels)
    return 2 / (time.perf_counter() - start)
  return one_round


def measure_bfloat16_speedup(build: Callable[[int], keras.Model]) -> float:
  """bfloat16 / float32 training steps per second of `build(image_size)` on small batches,
  rounds interleaved, medians (a few seconds to a minute on a 2-core CPU)."""
  rng = np.random.default_rng(0)
  images = rng.random((_CHECK_BATCH, _CHECK_IMAGE_SIZE, _CHECK_IMAGE_SIZE, 1), np.float32)
  labels = rng.integers(0, 2, _CHECK_BATCH)
  build_small = lambda: build(_CHECK_IMAGE_SIZE)
  rounds = {policy: _steps_per_second(build_small, policy, images, labels)
            for policy in ('float32', 'mixed_bfloat16')}
  rates: Dict[str, list] = {policy: [] for policy in rounds}
  for _ in range(_CHECK_ROUNDS):
    for policy, one_round in rounds.items():
      rates[policy].append(one_round())
  return statistics.median(rates['mixed_bfloat16']) / statistics.median(rates['float32'])


def choose(setting: str, build: Callable[[int], keras.Model],
           flags: Optional[FrozenSet[str]] = None) -> Tuple[str, str]:
  """(Keras policy name, why) for the setting 'auto' or an explicit policy.

  `build(image_size)` builds the model to time (only for 'auto' on a bfloat16 CPU).
  """
  if setting not in SETTINGS:
    raise ValueError(f'precision {setting!r}: choose one of {", ".join(SETTINGS)}')
  if setting != 'auto':
    return setting, 'set in the training configuration'
  if tf.config.list_physical_devices('GPU'):
    return 'mixed_float16', 'auto: a GPU is visible'
  flags = cpu_flags() if flags is None else flags
  hardware = sorted(BF16_FLAGS & flags)
  if not hardware:
    return 'float32', 'auto: the CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16)'
  speedup = measure_bfloat16_speedup(build)
  if speedup >= MIN_SPEEDUP:
    return 'mixed_bfloat16', (f'auto: the CPU has {"+".join(hardware)} and a short check '
                              f'trained {speedup:.2f}x faster in bfloat16')
  return 'float32', (f'auto: the CPU has {"+".join(hardware)} but a short check trained only '
                     f'{speedup:.2f}x as fast in bfloat16 (needs {MIN_SPEEDUP}x)')


def describe_machine() -> Dict[str, object]:
  """CPU model and the flags that decide the precision, for run logs and model cards."""
  flags = cpu_flags()
  return {'cpu_model': cpu_model(), 'cpu_count': os.cpu_count(),
          'bfloat16_flags': sorted(BF16_FLAGS & flags),
          'avx512': 'avx512f' in flags, 'gpus': len(tf.config.list_physical_devices('GPU'))}

