"""Runs the pipeline locally (LocalDagRunner, SQLite ML Metadata, Beam DirectRunner).

  python -m pipeline.run --profile default
  python -m pipeline.run --profile smoke --output-dir /tmp/qd --categories cat,dog,fish
"""
import argparse
import os
import sys
import time

from pipeline import config as config_lib  # Sets TF_USE_LEGACY_KERAS before TensorFlow loads.


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m pipeline.run', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--profile', default='default', choices=config_lib.profile_names())
  parser.add_argument('--source', help='folder, gs:// or https:// prefix of <category>.ndjson[.gz] '
                      'files (default: $QUICKDRAW_SOURCE, ../shared/quickdraw/simplified, or '
                      'the public bucket)')
  parser.add_argument('--output-dir', help='where pipeline outputs, ML Metadata and the model '
                      'registry go (default: outputs/)')
  parser.add_argument('--seed', type=int)
  parser.add_argument('--categories', help='comma-separated category names instead of a '
                      'random choice')
  parser.add_argument('--no-cache', action='store_true', help='re-run every component')
  return parser.parse_args(argv)


def config_from_args(args) -> config_lib.PipelineConfig:
  overrides = {}
  if args.source:
    overrides['source'] = args.source
  if args.output_dir:
    overrides['output_dir'] = args.output_dir
  if args.seed is not None:
    overrides['seed'] = args.seed
  if args.categories:
    names = tuple(n.strip() for n in args.categories.split(',') if n.strip())
    overrides.update(categories=names, num_categories=len(names))
  if args.no_cache:
    overrides['enable_cache'] = False
  return config_lib.profile(args.profile, **overrides)


def run(config: config_lib.PipelineConfig) -> str:
  """Runs the pipeline for `config`; returns the run id."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  before = set(_run_ids(config))
  tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
  new = [r for r in _run_ids(config) if r not in before]
  if not new:
    raise RuntimeError('the pipeline finished but recorded no run in ML Metadata')
  return new[-1]


def _run_ids(config):
  from pipeline import results  # pylint: disable=g-import-not-at-top
  if not os.path.exists(config.metadata_path):
    return []
  return results.run_ids(results.open_store(config.metadata_path), config.pipeline_name)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  config = config_from_args(args)
  print(f'quickdraw-tfx: profile {config.profile}: {config.num_categories} categories x '
        f'({config.train_per_category} train + {config.test_per_category} test) drawings, '
        f'{config.image_size}x{config.image_size}, seed {config.seed}\n'
        f'  source: {config.source}\n  outputs: {os.path.abspath(config.output_dir)}',
        flush=True)
  from absl import logging  # pylint: disable=g-import-not-at-top
  from components import quickdraw_data  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  start = time.time()
  try:
    if not quickdraw_data.is_url(config.source):
      quickdraw_data.list_categories(config.source)  # Fails fast, with the fix, on a bad source.
    run_id = run(config)
  except Exception as e:  # pylint: disable=broad-except
    # Any traceback is in the log above; the last line says what went wrong.
    print(f'\nquickdraw-tfx: the run failed: {type(e).__name__}: {e}', file=sys.stderr)
    return 1
  from pipeline import results  # pylint: disable=g-import-not-at-top
  nodes = results.node_runs(results.open_store(config.metadata_path), config.pipeline_name,
                            run_id)
  rows = results.model_summaries(nodes, config.models)
  cached = sum(n.state == 'CACHED' for n in nodes.values())
  print(f'\nRun {run_id} finished in {time.time() - start:.0f} s '
        f'({len(nodes)} components, {cached} from cache).\n')
  print(results.format_table(rows))
  return 0


if __name__ == '__main__':
  sys.exit(main())
