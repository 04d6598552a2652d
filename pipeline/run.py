"""Runs the pipeline locally (LocalDagRunner, SQLite ML Metadata, Beam DirectRunner).

  quickdraw-tfx run --profile default
  quickdraw-tfx run --profile smoke --output-dir outputs-smoke --categories cat,dog,fish

`python -m pipeline.run ...` takes the same flags.
"""
import argparse
import logging
import os
import re
import sys
import time
import traceback

from common import legacy_keras
from common import progress
from pipeline import config as config_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Source folders of the project's own packages (not .venv, which may sit inside the root).
_PROJECT_PACKAGES = tuple(os.path.join(_ROOT, package) + os.sep
                          for package in ('pipeline', 'components', 'models'))


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--profile', choices=config_lib.profile_names(),
                      help='named settings to start from (default: the config file\'s '
                      '`profile`, else default)')
  parser.add_argument('--config', metavar='YAML', help='settings that override the profile, '
                      'e.g. "seed: 7" or "training: {sknet: {epochs: 5}}"; flags override the file')
  parser.add_argument('--source', help='folder, gs:// or https:// prefix of <category>.ndjson[.gz] '
                      '(simplified or raw) or <category>.npy (numpy_bitmap) files (default: '
                      '$QUICKDRAW_SOURCE, ../shared/quickdraw/simplified, or the public bucket)')
  parser.add_argument('--output-dir', help='where pipeline outputs, ML Metadata and the model '
                      'registry go (default: outputs/)')
  parser.add_argument('--seed', type=int)
  parser.add_argument('--categories', help='comma-separated category names instead of a '
                      'random choice')
  parser.add_argument('--no-cache', action='store_true', help='re-run every component')
  parser.add_argument('--max-skip-ratio', type=float, help='share of unusable lines a category '
                      'file may have (skipped and counted in the manifest) before the run fails '
                      '(default 0.01; 0 fails on the first)')
  parser.add_argument('--recognized-only', action='store_true', help='keep only drawings the '
                      'game recognized (where the lines carry "recognized")')
  output = parser.add_mutually_exclusive_group()
  output.add_argument('--verbose', action='store_true', help='show the full TFX, Beam and '
                      'TensorFlow log on the console (it is always written to the log file)')
  output.add_argument('--quiet', action='store_true', help='console: warnings, errors and '
                      'the final summary only (for CI logs)')


def register(subparsers) -> None:
  """The `run` subcommand of quickdraw-tfx (pipeline/cli.py)."""
  parser = subparsers.add_parser(
      'run', help='run the pipeline locally', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  parser.set_defaults(func=run_command)


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m pipeline.run', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  return parser.parse_args(argv)


class ProgressFilter(logging.Filter):
  """Lets through what shows progress: component start and end, this project's own
  messages (sampling, epochs, evaluation), and errors. The rest goes to the log file only."""

  _COMPONENT = re.compile(r'^Component (\S+) is (running|finished)\.$')

  def __init__(self):
    super().__init__()
    self._started = {}  # Component id -> when its "is running" line passed.

  def filter(self, record: logging.LogRecord) -> bool:
    component = self._COMPONENT.match(record.getMessage())
    if component:
      self._add_elapsed(record, *component.groups())
    return (record.levelno >= logging.ERROR or record.pathname.startswith(_PROJECT_PACKAGES)
            or bool(component))

  def _add_elapsed(self, record: logging.LogRecord, node_id: str, state: str) -> None:
    if state == 'running':
      self._started[node_id] = record.created
    elif node_id in self._started:
      record.msg = f'{record.getMessage()} ({record.created - self._started.pop(node_id):.0f} s)'
      record.args = None


def _log_to_file(path: str, verbose: bool, quiet: bool = False) -> None:
  """Everything at INFO into `path`; the console gets ProgressFilter's share (all if verbose,
  warnings and errors only if quiet)."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  to_file = logging.FileHandler(path)
  to_file.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
  console = logging.StreamHandler(sys.stdout)
  console.setFormatter(logging.Formatter('%(asctime)s  %(message)s', datefmt='%H:%M:%S'))
  if quiet:
    console.setLevel(logging.WARNING)
  elif not verbose:
    console.addFilter(ProgressFilter())
  root = logging.getLogger()
  root.handlers = [to_file, console]  # Also keeps libraries' basicConfig() from adding more.
  root.setLevel(logging.INFO)
  logging.captureWarnings(True)  # Library deprecation warnings go to the file as well.


def config_from_args(args) -> config_lib.PipelineConfig:
  """The profile, then the YAML file, then flags. ValueError names what is wrong."""
  config = config_lib.load(args.profile, args.config)
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
  if getattr(args, 'max_skip_ratio', None) is not None:
    overrides['max_skip_ratio'] = args.max_skip_ratio
  if getattr(args, 'recognized_only', False):
    overrides['recognized_only'] = True
  return config.replace(**overrides)


def run(config: config_lib.PipelineConfig) -> str:
  """Runs the pipeline for `config`; returns the run id."""
  legacy_keras.enable()
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
  legacy_keras.enable()
  return run_command(parse_args(sys.argv[1:] if argv is None else argv))


def run_command(args) -> int:
  try:
    config = config_from_args(args)
  except ValueError as e:
    print(f'quickdraw-tfx run: error: {e}', file=sys.stderr)
    return 2
  say = (lambda *a, **k: None) if args.quiet else print
  if args.quiet:
    os.environ[progress.ENV] = 'off'
  say(f'quickdraw-tfx: profile {config.profile}: {config.num_categories} categories x '
        f'({config.train_per_category} train + {config.test_per_category} test) drawings, '
        f'{config.image_size}x{config.image_size}, seed {config.seed}\n'
        f'  source: {config.source}\n  outputs: {os.path.abspath(config.output_dir)}',
        flush=True)
  log_path = os.path.join(config.output_dir, 'logs',
                          time.strftime('run-%Y%m%d-%H%M%S.log', time.localtime()))
  _log_to_file(log_path, args.verbose, args.quiet)
  say(f'  log: {os.path.abspath(log_path)}', flush=True)
  from domain import quickdraw_source  # pylint: disable=g-import-not-at-top
  start = time.time()
  try:
    if not quickdraw_source.is_url(config.source):
      quickdraw_source.list_categories(config.source)  # Fails fast, with the fix, on a bad source.
    run_id = run(config)
  except Exception as e:  # pylint: disable=broad-except
    with open(log_path, 'a') as log:
      traceback.print_exc(file=log)
    print(f'\nquickdraw-tfx: the run failed: {type(e).__name__}: {e}\n  full log: '
          f'{os.path.abspath(log_path)}', file=sys.stderr)
    return 1
  from pipeline import results  # pylint: disable=g-import-not-at-top
  nodes = results.node_runs(results.open_store(config.metadata_path), config.pipeline_name,
                            run_id)
  rows = results.model_summaries(nodes, config.models)
  cached = sum(n.state == 'CACHED' for n in nodes.values())
  print(f'\nRun {run_id} finished in {time.time() - start:.0f} s '
        f'({len(nodes)} components, {cached} from cache).\n')
  data = results.data_summary(nodes)
  if data:
    print(data + '\n')
  print(results.format_table(rows))
  from pipeline import report  # pylint: disable=g-import-not-at-top
  try:
    _, html_path = report.build(config, run_id)
  except Exception as e:  # pylint: disable=broad-except
    with open(log_path, 'a') as log:
      traceback.print_exc(file=log)
    print(f'\nquickdraw-tfx: the run finished but its report failed: {type(e).__name__}: {e}\n'
          f'  retry with: quickdraw-tfx report --profile {config.profile} --output-dir '
          f'{config.output_dir} --run-id {run_id}\n  full log: {os.path.abspath(log_path)}',
          file=sys.stderr)
    return 1
  print(f'\nReport: {os.path.abspath(html_path)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
