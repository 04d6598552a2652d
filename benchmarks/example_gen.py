"""QuickDrawExampleGen benchmarks: throughput, reader memory, scaling. Numbers go in README.md.

  .venv/bin/python benchmarks/example_gen.py throughput --categories 20 --per-category 250
  .venv/bin/python benchmarks/example_gen.py memory --drawings 100000
  .venv/bin/python benchmarks/example_gen.py scale --categories 10,20,40 --per-category 100

throughput: the ExampleGen executor on the shared simplified files under the Beam
  DirectRunner in_memory and multi_processing (2 workers) modes, both configured through
  PipelineConfig.beam_pipeline_args, and a plain single-process loop (sample, render, encode,
  write) over the same drawings; interleaved repeats, medians side by side.
memory: peak RSS of the streaming reader (sample_category) vs a whole-file reader (the first
  version's approach: every line parsed and kept, then sampled) on one synthetic file, each
  in a fresh process.
scale: executor time and peak RSS (fresh process each) as the number of categories grows.
"""
import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from common import legacy_keras  # pylint: disable=g-import-not-at-top
legacy_keras.enable()  # Before TensorFlow is imported.
SHARED = os.path.normpath(os.path.join(ROOT, '..', 'shared', 'quickdraw', 'simplified'))
MODES = {
    'in_memory': ('--direct_running_mode=in_memory', '--direct_num_workers=1'),
    'multi_processing x2': ('--direct_running_mode=multi_processing', '--direct_num_workers=2'),
}


def _categories(count, seed=0):
  from domain import quickdraw_source  # pylint: disable=g-import-not-at-top
  return quickdraw_source.choose_categories(quickdraw_source.list_categories(SHARED), count, seed)


def run_executor(source, categories, per_category, beam_args, out_dir, seed=0):
  """One QuickDrawExampleGen executor run as TFX launches it; returns (seconds, manifest)."""
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  from tfx.dsl.components.base import base_beam_executor  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from tfx.utils import proto_utils  # pylint: disable=g-import-not-at-top
  from components import artifact_types  # pylint: disable=g-import-not-at-top
  from components.example_gen import component as example_gen_component
  from components.example_gen import executor as example_gen_executor
  from components.example_gen import outputs as example_gen_outputs
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.profile('default', source=source, beam_pipeline_args=tuple(beam_args))
  test = max(per_category // 10, 1)
  component = example_gen_component.QuickDrawExampleGen(
      source=source, num_categories=len(categories), train_per_category=per_category - test,
      test_per_category=test, seed=seed, categories=categories,
      render_size=config.render_size, stroke_width=config.stroke_width)
  exec_properties = {k: proto_utils.proto_to_json(v) if isinstance(v, message.Message) else v
                     for k, v in component.exec_properties.items()}
  examples, manifest = standard_artifacts.Examples(), artifact_types.SamplingManifest()
  examples.uri, manifest.uri = os.path.join(out_dir, 'examples'), os.path.join(out_dir, 'manifest')
  executor = example_gen_executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=list(config.beam_pipeline_args), tmp_dir=out_dir))
  start = time.perf_counter()
  executor.Do({}, {'examples': [examples], 'manifest': [manifest]}, exec_properties)
  return time.perf_counter() - start, example_gen_outputs.read_manifest(manifest)


def plain_loop(source, categories, per_category, out_dir, seed=0):
  """The same drawings sampled, rendered, encoded and written by one process, no Beam."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components.example_gen import category_sampling  # pylint: disable=g-import-not-at-top
  from domain import drawing_rendering  # pylint: disable=g-import-not-at-top
  test = max(per_category // 10, 1)
  start = time.perf_counter()
  read = written = 0
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  with tf.io.TFRecordWriter(os.path.join(out_dir, 'plain.gz'), options) as writer:
    for category in categories:
      sample = category_sampling.sample_category(source, category, per_category - test, test,
                                                 seed)
      read += sample.read
      for drawing_id, item in sample.train + sample.test:
        png = drawing_rendering.render_item(item)
        writer.write(drawing_rendering.to_example(drawing_id, category, png).SerializeToString(
            deterministic=True))
        written += 1
  return time.perf_counter() - start, read, written


def throughput(args):
  categories = _categories(args.categories)
  per_category = args.per_category
  times = {name: [] for name in list(MODES) + ['plain loop']}
  counts = {}
  for repeat in range(args.repeats):
    for name in times:  # Interleaved, so a busier moment of the shared CPU hits every mode.
      with tempfile.TemporaryDirectory() as out:
        if name == 'plain loop':
          seconds, read, written = plain_loop(SHARED, categories, per_category, out)
        else:
          seconds, manifest = run_executor(SHARED, categories, per_category, MODES[name], out)
          read, written = (manifest['totals']['read'],
                           manifest['totals']['train'] + manifest['totals']['test'])
      times[name].append(seconds)
      counts[name] = (read, written)
      print(f'  repeat {repeat + 1} {name}: {seconds:.1f} s', flush=True)
  baseline = statistics.median(times['plain loop'])
  print(f'\n{len(categories)} categories x {per_category} drawings from {SHARED}, '
        f'median of {args.repeats}:')
  print('| mode | median s | all runs s | drawings read/s | examples written/s | vs plain loop |')
  print('| --- | --- | --- | --- | --- | --- |')
  for name, values in times.items():
    median = statistics.median(values)
    read, written = counts[name]
    print(f'| {name} | {median:.1f} | {", ".join(f"{v:.1f}" for v in values)} | '
          f'{read / median:.0f} | {written / median:.0f} | {baseline / median:.2f}x |')


def _synthetic_file(path, drawings, seed=0):
  """`drawings` lines like the official simplified ones: 3-8 strokes of 5-30 points."""
  rng = random.Random(seed)
  with open(path, 'w') as f:
    for _ in range(drawings):
      strokes = [[[rng.randint(0, 255) for _ in range(n)], [rng.randint(0, 255) for _ in range(n)]]
                 for n in (rng.randint(5, 30) for _ in range(rng.randint(3, 8)))]
      f.write(json.dumps({'word': 'big', 'drawing': strokes}) + '\n')


def whole_file_sample(source, category, train_count, test_count, seed):
  """The first version's reader: every line parsed and kept, deduplicated, then sampled."""
  from domain import drawing_records  # pylint: disable=g-import-not-at-top
  from domain import quickdraw_source  # pylint: disable=g-import-not-at-top
  path = quickdraw_source.category_path(source, category)
  unique, seen = [], set()
  with open(path, 'rb') as f:
    for line_number, line in enumerate(f, start=1):
      drawing = drawing_records.parse_drawing(line, path, line_number, category)
      key = json.dumps(drawing, separators=(',', ':'))
      if key not in seen:
        seen.add(key)
        unique.append((f'{category}/{line_number}', drawing))
  return random.Random(f'{seed}:{category}').sample(unique, train_count + test_count)


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(argv):
  """Runs this script in a fresh process; returns its last stdout line parsed as JSON."""
  out = subprocess.run([sys.executable, __file__] + argv, check=True, capture_output=True,
                       text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def memory_child(args):
  from components.example_gen import category_sampling  # pylint: disable=g-import-not-at-top
  before = _peak_rss_mb()
  start = time.perf_counter()
  if args.reader == 'streaming':
    category_sampling.sample_category(args.folder, 'big', 900, 100, seed=0)
  else:
    whole_file_sample(args.folder, 'big', 900, 100, seed=0)
  print(json.dumps({'seconds': time.perf_counter() - start, 'peak_mb': _peak_rss_mb(),
                    'baseline_mb': before}))


def memory(args):
  with tempfile.TemporaryDirectory() as folder:
    _synthetic_file(os.path.join(folder, 'big.ndjson'), args.drawings)
    size_mb = os.path.getsize(os.path.join(folder, 'big.ndjson')) / 1e6
    runs = {'streaming': [], 'whole file': []}
    for _ in range(args.repeats):
      for reader in runs:
        runs[reader].append(_child(['_memory_child', '--folder', folder, '--reader',
                                    'streaming' if reader == 'streaming' else 'whole']))
  print(f'\n{args.drawings} drawings ({size_mb:.0f} MB ndjson), 900 + 100 sampled, '
        f'median of {args.repeats}, fresh process each:')
  print('| reader | peak RSS MB | growth over imports MB | seconds |')
  print('| --- | --- | --- | --- |')
  for reader, values in runs.items():
    peak, seconds = (statistics.median(v[key] for v in values) for key in ('peak_mb', 'seconds'))
    growth = statistics.median(v['peak_mb'] - v['baseline_mb'] for v in values)
    print(f'| {reader} | {peak:.0f} | {growth:.0f} | {seconds:.1f} |')


def scale_child(args):
  categories = _categories(args.count)
  with tempfile.TemporaryDirectory() as out:
    seconds, manifest = run_executor(SHARED, categories, args.per_category,
                                     MODES['in_memory'], out)
  print(json.dumps({'seconds': seconds, 'peak_mb': _peak_rss_mb(),
                    'read': manifest['totals']['read']}))


def scale(args):
  counts = [int(c) for c in args.categories.split(',')]
  runs = {c: [] for c in counts}
  for _ in range(args.repeats):
    for count in counts:
      runs[count].append(_child(['_scale_child', '--count', str(count), '--per-category',
                                 str(args.per_category)]))
  print(f'\nExecutor, in_memory, {args.per_category} drawings per category, median of '
        f'{args.repeats}, fresh process each:')
  print('| categories | drawings read | median s | s per category | peak RSS MB |')
  print('| --- | --- | --- | --- | --- |')
  for count, values in runs.items():
    seconds = statistics.median(v['seconds'] for v in values)
    print(f'| {count} | {values[0]["read"]} | {seconds:.1f} | {seconds / count:.2f} | '
          f'{statistics.median(v["peak_mb"] for v in values):.0f} |')


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  p = sub.add_parser('throughput')
  p.add_argument('--categories', type=int, default=20)
  p.add_argument('--per-category', type=int, default=250)
  p.add_argument('--repeats', type=int, default=3)
  p.set_defaults(func=throughput)
  p = sub.add_parser('memory')
  p.add_argument('--drawings', type=int, default=100000)
  p.add_argument('--repeats', type=int, default=3)
  p.set_defaults(func=memory)
  p = sub.add_parser('scale')
  p.add_argument('--categories', default='10,20,40')
  p.add_argument('--per-category', type=int, default=100)
  p.add_argument('--repeats', type=int, default=3)
  p.set_defaults(func=scale)
  p = sub.add_parser('_memory_child')
  p.add_argument('--folder')
  p.add_argument('--reader')
  p.set_defaults(func=memory_child)
  p = sub.add_parser('_scale_child')
  p.add_argument('--count', type=int)
  p.add_argument('--per-category', type=int)
  p.set_defaults(func=scale_child)
  args = parser.parse_args()
  args.func(args)


if __name__ == '__main__':
  main()
