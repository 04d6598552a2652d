"""The numeric precision the Trainer computes in, chosen per machine.

On GPUs mixed float16 is the standard speed-up. On CPUs it depends on the hardware: with
bfloat16 instructions (AVX512_BF16, AMX) mixed bfloat16 trained the project's models about
twice as fast as float32 at batch 32 (benchmarks/README.md, "## Precision"); without them it is
slower, and mixed float16 is ~80x slower on CPUs without float16 kernels. So 'auto' picks
mixed float16 on a GPU, and on a CPU with bfloat16 hardware times a few training steps of the
model in both precisions and keeps bfloat16 only when it is measurably faster.
"""
import contextlib
import json
import os
import statistics
import time
from typing import Callable, Dict, FrozenSet, Iterator, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

SETTINGS = ('auto', 'float32', 'mixed_bfloat16', 'mixed_float16')
# CPU flags (Linux /proc/cpuinfo) of bfloat16 arithmetic in hardware.
BF16_FLAGS = frozenset({'avx512_bf16', 'amx_bf16'})
# bfloat16 must be at least this much faster in the check to be chosen.
MIN_SPEEDUP = 1.15
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


@contextlib.contextmanager
def computing_in(policy: str) -> Iterator[None]:
  """Keras' global policy set to `policy` while models are built inside, then put back: the
  layers built compute in it, their variables stay float32."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _steps_per_second(build: Callable[[], keras.Model], policy: str, images: np.ndarray,
                      labels: np.ndarray) -> Callable[[], float]:
  """A function timing one training step of `build()` under `policy`."""
  with computing_in(policy):
    model = build()
  model.compile(optimizer=keras.optimizers.Adam(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  for _ in range(2):  # Traces, then warms up.
    model.train_on_batch(images, labels)

  def one_round() -> float:
    start = time.perf_counter()
    model.train_on_batch(images, labels)
    return 1 / (time.perf_counter() - start)
  return one_round


def measure_bfloat16_speedup(build: Callable[[int], keras.Model], image_size: int,
                             batch_size: int) -> float:
  """bfloat16 / float32 training steps per second of `build(image_size)` at the training's
  own image and batch size (the gain depends on both: 2.0x at batch 32, 1.4x at 64 for skNet
  on the same CPU), rounds interleaved, medians: 20-40 s for these models on 2 cores."""
  rng = np.random.default_rng(0)
  images = rng.random((batch_size, image_size, image_size, 1), np.float32)
  labels = rng.integers(0, 2, batch_size)
  rounds = {policy: _steps_per_second(lambda: build(image_size), policy, images, labels)
            for policy in ('float32', 'mixed_bfloat16')}
  rates: Dict[str, list] = {policy: [] for policy in rounds}
  for _ in range(_CHECK_ROUNDS):
    for policy, one_round in rounds.items():
      rates[policy].append(one_round())
  return statistics.median(rates['mixed_bfloat16']) / statistics.median(rates['float32'])


def _cache_path() -> str:
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'quickdraw-tfx', 'precision.json')


def cached_speedup(key: str, measure: Callable[[], float]) -> Tuple[float, bool]:
  """(bfloat16 speedup, whether it came from the cache) for this machine and model.

  The check costs about half a minute per model, a fifth of a short Trainer, and its answer
  depends only on the CPU, TensorFlow, the model and its input shape: it is kept in the user's
  cache folder (one per machine; a container without one measures every time).
  """
  path = _cache_path()
  try:
    with open(path) as f:
      known = json.load(f)
  except (OSError, ValueError):
    known = {}
  if isinstance(known.get(key), (int, float)):
    return float(known[key]), True
  speedup = measure()
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    known = {k: v for k, v in known.items() if isinstance(v, (int, float))}
    with open(path + '.tmp', 'w') as f:
      json.dump({**known, key: speedup}, f, indent=1)
    os.replace(path + '.tmp', path)
  except OSError as e:  # A read-only home: measure again next time.
    logging.info('precision check not cached (%s)', e)
  return speedup, False


def choose(setting: str, build: Callable[[int], keras.Model], image_size: int,
           batch_size: int, flags: Optional[FrozenSet[str]] = None,
           model_name: str = '') -> Tuple[str, str]:
  """(Keras policy name, why) for the setting 'auto' or an explicit policy.

  `build(image_size)` builds the model to time (only for 'auto' on a bfloat16 CPU, once per
  machine, model, image and batch size and TensorFlow version).
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
  key = '|'.join([cpu_model(), ' '.join(hardware), tf.__version__, model_name,
                  f'{image_size}px', f'batch {batch_size}'])
  speedup, cached = cached_speedup(
      key, lambda: measure_bfloat16_speedup(build, image_size, batch_size))
  check = 'a short check' + (' (cached)' if cached else '')
  if speedup >= MIN_SPEEDUP:
    return 'mixed_bfloat16', (f'auto: the CPU has {"+".join(hardware)} and {check} '
                              f'trained {speedup:.2f}x faster in bfloat16')
  return 'float32', (f'auto: the CPU has {"+".join(hardware)} but {check} trained only '
                     f'{speedup:.2f}x as fast in bfloat16 (needs {MIN_SPEEDUP}x)')


def describe_machine() -> Dict[str, object]:
  """CPU model and the flags that decide the precision, for run logs and model cards."""
  flags = cpu_flags()
  return {'cpu_model': cpu_model(), 'cpu_count': os.cpu_count(),
          'bfloat16_flags': sorted(BF16_FLAGS & flags),
          'avx512': 'avx512f' in flags, 'gpus': len(tf.config.list_physical_devices('GPU'))}

