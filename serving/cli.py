"""The registry's consumers on the command line: `models`, `search` and `serve`.

  quickdraw-tfx models                               every pushed version, headline metrics
  quickdraw-tfx models skresnet [--version 17...]    one model card
  quickdraw-tfx search --model skresnet --query cat.png --k 10 --out grid.png
  quickdraw-tfx search --model sknet --query queries.ndjson
  quickdraw-tfx serve --port 8080                    the HTTP search endpoint (serving/server.py)

Exit codes: 0 success, 1 the work failed, 2 bad usage (unknown model, malformed, unknown or damaged
version, bad query, an --out path that cannot be written).
"""
import argparse
import json
import os
import sys

from domain import registry_store


def default_registry() -> str:
  """$QUICKDRAW_REGISTRY, else the default profile's registry (outputs/registry)."""
  return os.environ.get('QUICKDRAW_REGISTRY') or registry_store.DEFAULT_REGISTRY


def _add_registry(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--registry', default=None, help='registry folder (default: '
                      '$QUICKDRAW_REGISTRY or outputs/registry)')


def register(subparsers) -> None:
  """The `models`, `search` and `serve` subcommands of quickdraw-tfx (pipeline/cli.py)."""
  formatter = argparse.RawDescriptionHelpFormatter
  models = subparsers.add_parser('models', help='list pushed models, or show one model card',
                                 description=__doc__, formatter_class=formatter)
  models.add_argument('model', nargs='?', help='show this model\'s card')
  models.add_argument('--version', default='latest', help='version number or "latest"')
  models.add_argument('--json', action='store_true', help='print JSON instead of text')
  _add_registry(models)
  models.set_defaults(func=models_command)

  search = subparsers.add_parser('search', help='find the drawings most similar to a query',
                                 description=__doc__, formatter_class=formatter)
  search.add_argument('--model', required=True, help='model name in the registry')
  search.add_argument('--query', required=True, help='a PNG file, a .ndjson file (one query '
                      'per line) or one ndjson line')
  search.add_argument('--k', type=int, default=10, help='results per query (default 10)')
  search.add_argument('--version', default='latest', help='version number or "latest"')
  search.add_argument('--out', help='write an image grid of each query and its results')
  search.add_argument('--json', action='store_true', help='print JSON instead of text')
  search.add_argument('--index', default='exact', choices=('exact', 'hnsw'),
                      help='exact L2 (default) or an approximate HNSW index (needs faiss; for '
                      'large galleries)')
  _add_registry(search)
  search.set_defaults(func=search_command)

  serve = subparsers.add_parser('serve', help='serve search over HTTP (waitress: bounded '
                                'threads, timeouts, upload limit, models loaded)',
                                description=__doc__, formatter_class=formatter)
  from serving import server  # pylint: disable=g-import-not-at-top  # Light: no TensorFlow.
  server.add_arguments(serve)
  _add_registry(serve)
  serve.set_defaults(func=serve_command)


def _fail(message: str, code: int) -> int:
  print(f'quickdraw-tfx: {message}', file=sys.stderr)
  return code


def _format_metrics(metrics) -> str:
  return '  '.join(f'{key} {value:.4f}' for key, value in metrics.items())


def _registry_error(root: str, error) -> int:
  """Exit code 2 and the message; the registry folder is named unless the version was bad."""
  from serving import registry  # pylint: disable=g-import-not-at-top
  where = '' if isinstance(error, registry.BadVersionError) else f'{root}: '
  return _fail(f'{where}{error}', 2)


def models_command(args) -> int:
  from serving import registry  # pylint: disable=g-import-not-at-top
  root = args.registry or default_registry()
  try:
    if args.model:
      version = registry.resolve(root, args.model, args.version)
      markdown = None if args.json else registry.card_markdown(version)
      if markdown is None:  # --json, or a version whose model_card.md is unreadable.
        print(json.dumps(version.card, indent=2))
      else:
        print(f'{version.path}\n\n{markdown}')
      return 0
    rows = registry.summary_rows(root)
  except registry.RegistryError as e:
    return _registry_error(root, e)
  if args.json:
    print(json.dumps(rows, indent=2))
    return 0
  valid = [row for row in rows if 'skipped' not in row]
  if valid:
    print(f'{"model":<10} {"version":<11} {"pushed at (UTC)":<26} {"gallery":>7}  metrics')
  for row in valid:
    metrics = {k: v for k, v in row.items()
               if k not in ('model', 'version', 'pushed_at', 'gallery')}
    print(f'{row["model"]:<10} {row["version"]:<11} {row["pushed_at"] or "":<26} '
          f'{row["gallery"] or 0:>7}  {_format_metrics(metrics)}')
  for row in rows:
    if 'skipped' in row:
      print(f'skipped: {row["model"]} version {row["version"]}: {row["skipped"]}',
            file=sys.stderr)
  if not rows:
    return _fail(f'{root}: no pushed models (run the pipeline first: quickdraw-tfx run)', 1)
  if not valid:
    return _fail(f'{root}: no usable pushed models: every version was skipped', 1)
  return 0


def search_command(args) -> int:
  from serving import registry  # pylint: disable=g-import-not-at-top
  from serving import search  # pylint: disable=g-import-not-at-top
  root = args.registry or default_registry()
  if not 1 <= args.k <= search.MAX_K:
    return _fail(f'--k {args.k}: choose 1 to {search.MAX_K}', 2)
  if args.out and (problem := _unwritable(args.out)):  # Before the model is loaded.
    return _fail(f'--out {args.out}: {problem}', 2)

  def prepare(version):  # The query is read before the model is loaded.
    queries = search.read_queries(args.query, *search.render_settings(version.card))
    try:
      return version, queries, search.Searcher(version, args.index)
    except registry.DamagedVersionError as e:
      if registry.parse_version(args.version) == registry.LATEST:
        print(f'quickdraw-tfx: {e}; trying the next newest version', file=sys.stderr)
      raise

  try:
    version, queries, searcher = registry.load_newest(root, args.model, args.version, prepare)
  except registry.RegistryError as e:
    return _registry_error(root, e)
  except search.QueryError as e:
    return _fail(str(e), 2)
  except Exception as e:  # pylint: disable=broad-except  # A message, not a traceback.
    return _fail(f'loading {args.model} failed: {type(e).__name__}: {e}', 1)
  try:
    results = searcher.search(queries, args.k)
  except Exception as e:  # pylint: disable=broad-except  # A message, not a traceback.
    return _fail(f'search on {version.model} version {version.version} failed: '
                 f'{type(e).__name__}: {e}', 1)
  if args.json:
    print(json.dumps([r.to_dict() for r in results], indent=2))
  else:
    method = 'exact L2' if args.index == 'exact' else 'approximate (HNSW) L2'
    print(f'{version.model} version {version.version}: gallery of {len(searcher.gallery)} '
          f'drawings, {method} search on fc_1\n')
    print('\n\n'.join(search.format_result(r) for r in results))
  if args.out:
    try:
      search.write_grid(results, searcher.gallery, args.out)
    except (OSError, ValueError) as e:  # Full disk, permissions changed since the check, ...
      return _fail(f'--out {args.out}: the image grid could not be written: '
                   f'{type(e).__name__}: {getattr(e, "strerror", None) or e}', 1)
    print(f'\nimage grid: {args.out}', file=sys.stderr if args.json else sys.stdout)
  return 0


def _unwritable(path: str):
  """Why the image grid cannot be written to `path`, or None if it can be tried."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if os.path.isdir(path):
    return 'is a folder; name an image file, e.g. grid.png'
  extension = os.path.splitext(path)[1].lower()
  if Image.registered_extensions().get(extension) not in Image.SAVE:
    return (f'{extension or "no extension"}: not an image format that can be written; name the '
            'file .png')
  folder = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(folder):  # write_grid creates missing folders: check the first one.
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder):
    return f'{folder} is a file, not a folder'
  if not os.access(folder, os.W_OK | os.X_OK):
    return f'{folder} is not writable'
  return None


def serve_command(args) -> int:
  from serving import server  # pylint: disable=g-import-not-at-top
  if problem := server.check_arguments(args):
    return _fail(problem, 2)
  return server.serve(args, args.registry or default_registry())
