"""The registry's consumers on the command line: `models`, `search` and `serve`.

  quickdraw-tfx models                               every pushed version, headline metrics
  quickdraw-tfx models skresnet [--version 17...]    one model card
  quickdraw-tfx search --model skresnet --query cat.png --k 10 --out grid.png
  quickdraw-tfx search --model sknet --query queries.ndjson
  quickdraw-tfx serve --port 8080                    the HTTP search endpoint (serving/http.py)

Exit codes: 0 success, 1 the work failed, 2 bad usage (unknown model or version, bad query).
"""
import argparse
import json
import os
import sys

from pipeline import config as config_lib  # Sets TF_USE_LEGACY_KERAS before TensorFlow loads.


def default_registry() -> str:
  """$QUICKDRAW_REGISTRY, else the default profile's registry (outputs/registry)."""
  return os.environ.get('QUICKDRAW_REGISTRY') or config_lib.PROFILES['default'].registry_dir


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

  serve = subparsers.add_parser('serve', help='serve search over HTTP (local use)',
                                description=__doc__, formatter_class=formatter)
  serve.add_argument('--host', default='127.0.0.1')
  serve.add_argument('--port', type=int, default=8080)
  _add_registry(serve)
  serve.set_defaults(func=serve_command)


def _fail(message: str, code: int) -> int:
  print(f'quickdraw-tfx: {message}', file=sys.stderr)
  return code


def _format_metrics(metrics) -> str:
  return '  '.join(f'{key} {value:.4f}' for key, value in metrics.items())


def models_command(args) -> int:
  from serving import registry  # pylint: disable=g-import-not-at-top
  root = args.registry or default_registry()
  try:
    if args.model:
      version = registry.resolve(root, args.model, args.version)
      if args.json:
        print(json.dumps(version.card, indent=2))
      else:
        print(f'{version.path}\n\n{registry.read_card_markdown(version.path)}')
      return 0
    rows = registry.summary_rows(root)
  except registry.RegistryError as e:
    return _fail(str(e), 2)
  if args.json:
    print(json.dumps(rows, indent=2))
    return 0
  if not rows:
    return _fail(f'{root}: no pushed models (run the pipeline first: quickdraw-tfx run)', 1)
  print(f'{"model":<10} {"version":<11} {"pushed at (UTC)":<26} {"gallery":>7}  metrics')
  for row in rows:
    metrics = {k: v for k, v in row.items()
               if k not in ('model', 'version', 'pushed_at', 'gallery')}
    print(f'{row["model"]:<10} {row["version"]:<11} {row["pushed_at"] or "":<26} '
          f'{row["gallery"] or 0:>7}  {_format_metrics(metrics)}')
  return 0


def search_command(args) -> int:
  from serving import registry  # pylint: disable=g-import-not-at-top
  from serving import search  # pylint: disable=g-import-not-at-top
  root = args.registry or default_registry()
  if not 1 <= args.k <= search.MAX_K:
    return _fail(f'--k {args.k}: choose 1 to {search.MAX_K}', 2)
  try:
    version = registry.resolve(root, args.model, args.version)
    queries = search.read_queries(args.query, *search.render_settings(version.card))
  except (registry.RegistryError, search.QueryError) as e:
    return _fail(str(e), 2)
  try:
    searcher = search.Searcher(version, args.index)
    results = searcher.search(queries, args.k)
  except Exception as e:  # pylint: disable=broad-except  # A message, not a traceback.
    return _fail(f'search on {version.path} failed: {type(e).__name__}: {e}', 1)
  if args.json:
    print(json.dumps([r.to_dict() for r in results], indent=2))
  else:
    method = 'exact L2' if args.index == 'exact' else 'approximate (HNSW) L2'
    print(f'{version.model} version {version.version}: gallery of {len(searcher.gallery)} '
          f'drawings, {method} search on fc_1\n')
    print('\n\n'.join(search.format_result(r) for r in results))
  if args.out:
    search.write_grid(results, searcher.gallery, args.out)
    print(f'\nimage grid: {args.out}', file=sys.stderr if args.json else sys.stdout)
  return 0


def serve_command(args) -> int:
  from serving import http  # pylint: disable=g-import-not-at-top
  app = http.create_app(args.registry or default_registry())
  print(f'quickdraw-tfx: search endpoint on http://{args.host}:{args.port}/search '
        '(development server: for production put it behind a WSGI server)')
  app.run(host=args.host, port=args.port)
  return 0
