"""The search endpoint over HTTP (Flask): a small JSON API on the model registry.

  GET  /models                              pushed versions with headline metrics
  GET  /models/<model>?version=latest       one model card
  POST /search?model=<m>&k=10&version=latest
       body: a PNG (Content-Type image/png), ndjson lines (application/x-ndjson or
       application/json), or a multipart form with the file in field `query`

Bad input gets a 4xx with {"error": {"status", "message"}}: 400 bad query or parameter,
404 unknown model or version, 413 upload over the limit, 415 unsupported content type.
"""
import threading
from typing import Dict, Tuple

import flask
from werkzeug import exceptions

from serving import registry
from serving import search

# A sketch PNG is a few KB; an ndjson batch of MAX_QUERIES drawings stays well under this.
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
_NDJSON_TYPES = ('application/x-ndjson', 'application/json', 'application/ndjson', 'text/plain')


class _BadRequest(Exception):

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def create_app(registry_root: str, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> flask.Flask:
  app = flask.Flask(__name__)
  app.config['MAX_CONTENT_LENGTH'] = max_upload_bytes
  searchers: Dict[Tuple[str, int], search.Searcher] = {}
  lock = threading.Lock()

  def searcher_for(resolved: registry.ModelVersion) -> search.Searcher:
    with lock:
      key = (resolved.model, resolved.version)
      if key not in searchers:
        searchers[key] = search.Searcher(resolved)
      return searchers[key]

  def error(status: int, message: str):
    return flask.jsonify({'error': {'status': status, 'message': message}}), status

  @app.errorhandler(_BadRequest)
  def bad_request(e: _BadRequest):
    return error(e.status, str(e))

  @app.errorhandler(search.QueryError)
  def bad_query(e: search.QueryError):
    return error(400, str(e))

  @app.errorhandler(registry.RegistryError)
  def unknown(e: registry.RegistryError):
    return error(404, str(e))

  @app.errorhandler(exceptions.HTTPException)
  def http_error(e: exceptions.HTTPException):
    message = e.description
    if isinstance(e, exceptions.RequestEntityTooLarge):
      message = f'the upload is over the limit of {max_upload_bytes} bytes'
    return error(e.code or 500, message)

  @app.errorhandler(Exception)
  def failed(e: Exception):
    app.logger.exception('search failed')  # The traceback goes to the log, not the client.
    return error(500, f'the server failed: {type(e).__name__}')

  @app.get('/models')
  def models():
    return flask.jsonify({'registry': registry_root,
                          'models': registry.summary_rows(registry_root)})

  @app.get('/models/<model>')
  def model_card(model: str):
    version = registry.resolve(registry_root, model, flask.request.args.get('version', 'latest'))
    return flask.jsonify(version.card)

  @app.post('/search')
  def search_endpoint():
    args = flask.request.args
    model = args.get('model')
    if not model:
      raise _BadRequest(400, 'the "model" parameter is required, e.g. /search?model=sknet')
    try:
      k = int(args.get('k', 10))
    except ValueError:
      raise _BadRequest(400, f'k={args.get("k")!r} is not a whole number') from None
    if not 1 <= k <= search.MAX_K:
      raise _BadRequest(400, f'k={k}: choose 1 to {search.MAX_K}')
    # Resolved per request so a new push is served at once; the query is checked before the
    # model is loaded.
    resolved = registry.resolve(registry_root, model, args.get('version', 'latest'))
    name, data = _upload()
    queries = search.queries_from_bytes(data, name, *search.render_settings(resolved.card))
    searcher = searcher_for(resolved)
    results = searcher.search(queries, k)
    return flask.jsonify({'model': searcher.model_version.model,
                          'version': searcher.model_version.version,
                          'gallery_size': len(searcher.gallery),
                          'queries': [r.to_dict() for r in results]})

  return app


def _upload() -> Tuple[str, bytes]:
  """(name, bytes) of the query: a multipart file field `query`, or the raw request body."""
  request = flask.request
  if request.mimetype == 'multipart/form-data':
    upload = request.files.get('query')
    if upload is None:
      raise _BadRequest(400, 'the multipart form has no file field "query"')
    return upload.filename or 'query', upload.read()
  if request.mimetype == 'image/png' or request.mimetype in _NDJSON_TYPES:
    return 'request body', request.get_data()
  raise _BadRequest(415, f'Content-Type {request.mimetype or "(none)"!r} is not supported; '
                    'send image/png, application/x-ndjson, or multipart/form-data with '
                    'field "query"')
