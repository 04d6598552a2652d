"""Training throughput against the CPU's peak, and the settings that may move it
(benchmarks/README.md, "Training throughput against the hardware").

Each variant is a child process (thread pools and oneDNN are fixed when TensorFlow starts), run
in turn, round after round (A B C A B C ...), each timing `train_on_batch` of skNet at 128x128
in float32 on in-memory random batches after a warm-up; medians are reported. Achieved FLOP/s
are images/s x 3 forward passes (benchmarks/training.py, "flops") against the peak, cores x
2 FMA units x SIMD lanes (8 float32 with AVX2, 16 with AVX-512) x 2 FLOP x clock.

  python benchmarks/training_threads.py --repeats 3 --output result.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name: (environment, intra-op threads, inter-op threads, batch size); 0 = TensorFlow's default.
VARIANTS = {
    'default': ({}, 0, 0, 32),
    'intra2_inter1': ({}, 2, 1, 32),
    'intra1_inter2': ({}, 1, 2, 32),
    'onednn_off': ({'TF_ENABLE_ONEDNN_OPTS': '0'}, 0, 0, 32),
    'batch64': ({}, 0, 0, 64),
}


def peak_flops(cpuinfo: str = '/proc/cpuinfo') -> dict:
  """The float32 FMA peak of this machine from /proc/cpuinfo (clock as the kernel reports it)."""
  from models import precision  # pylint: disable=g-import-not-at-top
  flags = precision.cpu_flags(cpuinfo)
  with open(cpuinfo) as f:
    clocks = [float(line.split(':')[1]) for line in f if line.startswith('cpu MHz')]
  lanes = 16 if 'avx512f' in flags else 8 if 'avx2' in flags else 4
  megahertz = max(clocks) if clocks else 0.0
  cores = os.cpu_count()
  return {'cores': cores, 'fma_units_per_core': 2, 'float32_lanes': lanes, 'mhz': megahertz,
          'peak_gflops': cores * 2 * lanes * 2 * megahertz / 1e3}


def _child(intra: int, inter: int, batch_size: int, steps: int) -> None:
  """Runs in the child: prints one JSON line {images_per_second, forward_gflop}."""
  from common import legacy_keras  # pylint: disable=g-import-not-at-top
  legacy_keras.enable()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if intra:
    tf.config.threading.set_intra_op_parallelism_threads(intra)
  if inter:
    tf.config.threading.set_inter_op_parallelism_threads(inter)
  from benchmarks import training  # pylint: disable=g-import-not-at-top
  model = training._build('sknet')  # pylint: disable=protected-access
  images, labels = training._random_batch(batch_size)  # pylint: disable=protected-access
  for _ in range(2):  # Tracing and warm-up.
    model.train_on_batch(images, labels)
  start = time.perf_counter()
  for _ in range(steps):
    model.train_on_batch(images, labels)
  rate = steps * batch_size / (time.perf_counter() - start)
  print(json.dumps({'images_per_second': rate,
                    'forward_gflop': training.layer_flops(model) / 1e9}))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--images', type=int, default=128, help='timed images per measurement')
  parser.add_argument('--output')
  parser.add_argument('--child', nargs=4, type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    _child(*args.child)
    return 0
  from benchmarks.training import emit  # pylint: disable=g-import-not-at-top
  from models import precision  # pylint: disable=g-import-not-at-top
  names = args.variants.split(',')
  started = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
  rates = {name: [] for name in names}
  forward_gflop = None
  for round_number in range(args.repeats):
    for name in names:
      environment, intra, inter, batch_size = VARIANTS[name]
      steps = max(args.images // batch_size, 1)
      child = subprocess.run(
          [sys.executable, os.path.abspath(__file__), '--child', str(intra), str(inter),
           str(batch_size), str(steps)],
          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_USE_LEGACY_KERAS='1',
                   **environment), capture_output=True, text=True, check=True, cwd=ROOT)
      measured = json.loads(child.stdout.strip().splitlines()[-1])
      rates[name].append(measured['images_per_second'])
      forward_gflop = measured['forward_gflop']
    print(f'round {round_number + 1}/{args.repeats}: ' + ', '.join(
        f'{name} {rates[name][-1]:.2f}' for name in names), flush=True)
  peak = peak_flops()
  result = {'started': started, 'machine': precision.describe_machine(), 'peak': peak,
            'forward_gflop_per_image': forward_gflop,
            'config': dict(vars(args), output=args.output and os.path.basename(args.output)),
            'variants': {}}
  for name in names:
    median = statistics.median(rates[name])
    achieved = median * 3 * forward_gflop
    result['variants'][name] = {
        'images_per_second': rates[name], 'median': median,
        'training_gflops': achieved,
        'share_of_peak': achieved / peak['peak_gflops'] if peak['peak_gflops'] else None}
  emit(result, args.output)
  return 0


if __name__ == '__main__':
  sys.exit(main())
