"""The search endpoint over HTTP (Flask): a small JSON API on the model registry.

  GET  /models                              pushed versions with headline metrics
  GET  /models/<model>?version=latest       one model card (storage locations left out)
  POST /search?model=<m>&k=10&version=latest
       body: a PNG (Content-Type image/png), ndjson lines (application/x-ndjson or
       application/json), or a multipart form with the file in field `query`
  GET  /health                              liveness, the versions loaded and their batching
                                            (requests, model calls, inputs per call)

Every error is JSON, {"error": {"status", "message"}}: 400 bad query, parameter or version
string, 404 unknown model, version or route (`//` in a path too: no redirects), 405 wrong
method, 413 upload over the limit (chunked or not), 415 unsupported content type, 500 the
server failed (the log has the traceback). Responses name no file or folder of the server,
and repeat no path-like value a client sent (so a right guess of one reads like a wrong one).

"latest" is the newest version that loads: one that fails to (SavedModel, variables, gallery,
card) is remembered as damaged by serving/registry.py, listed by /models, and not tried again.

The app keeps the `max_models` most recently used versions loaded (serving/model_cache.py)
and batches concurrent searches on one version into one model call (serving/batching.py).
Run it with serving/server.py (`quickdraw-tfx serve`).
"""
import ctypes
import ctypes.util
import gc
import io
import os
import re
import weakref
from typing import Callable, Optional, Tuple

import flask
from werkzeug import exceptions

from serving import batching
from serving import errors
from serving import model_cache
from serving import pad
from serving import png_decoding
from serving import registry
from serving import search

_NDJSON_TYPES = ('application/x-ndjson', 'application/json', 'application/ndjson', 'text/plain')
_MEDIA_TYPE = re.compile(r'[\w.+-]{1,60}/[\w.+-]{1,60}')
# A string that names a place on the server or its storage: a path (POSIX or Windows,
# absolute or ./ ../) or a file system's URI (gs://, file://, ...); http(s) addresses stay.
_LOCATION = re.compile(
    r'^(/|~|\.\.?[\\/]|[A-Za-z]:[\\/]|\\\\|(?!https?://)[A-Za-z][A-Za-z0-9+.-]*://)')


class _BadRequest(Exception):

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def create_app(registry_root: str, max_upload_bytes: int = errors.MAX_UPLOAD_BYTES,
               max_models: int = model_cache.DEFAULT_CAPACITY,
               max_batch: int = batching.MAX_BATCH,
               batch_wait: float = batching.MAX_WAIT_SECONDS,
               load_searcher: Optional[Callable[[registry.ModelVersion], object]] = None
               ) -> flask.Flask:
  """The app. `load_searcher(model_version)` makes a searcher (default: a BatchedSearcher)."""
  app = flask.Flask(__name__, static_folder=None)  # The sketch pad serves its own files.
  # Werkzeug answers `//models` with an HTML redirect to /models; a 404 in JSON instead.
  app.url_map.merge_slashes = False
  app.config['MAX_CONTENT_LENGTH'] = max_upload_bytes
  app.wsgi_app = _BoundedBody(app.wsgi_app, max_upload_bytes)
  make = load_searcher or (lambda version: BatchedSearcher(version, max_batch, batch_wait))

  def load(version: registry.ModelVersion):
    free_unused_memory()  # What evicted versions left, before a new one takes more.
    return make(version)

  searchers = model_cache.LruCache(max_models, after_eviction=free_unused_memory)
  app.extensions['searchers'] = searchers
  hidden = sorted({path for path in (os.path.abspath(registry_root),
                                     os.path.realpath(registry_root)) if len(path) > 1},
                  key=len, reverse=True)

  def searcher_for(resolved: registry.ModelVersion):
    return searchers.get((resolved.model, resolved.version), lambda: load(resolved))

  def error(status: int, message: str):
    for path in hidden:  # Belt and braces: no message names the registry's location.
      message = message.replace(path, '<registry>')
    message = png_decoding.without_object_reprs(message)
    return flask.jsonify({'error': {'status': status, 'message': message}}), status

  @app.errorhandler(_BadRequest)
  def bad_request(e: _BadRequest):
    return error(e.status, str(e))

  @app.errorhandler(search.QueryError)
  def bad_query(e: search.QueryError):
    return error(400, str(e))

  @app.errorhandler(registry.BadVersionError)
  def bad_version(e: registry.BadVersionError):
    return error(400, str(e))

  @app.errorhandler(registry.RegistryError)
  def unknown(e: registry.RegistryError):
    return error(404, str(e))

  @app.errorhandler(exceptions.HTTPException)
  def http_error(e: exceptions.HTTPException):
    message = e.description
    if isinstance(e, exceptions.RequestEntityTooLarge):
      message = errors.too_large_message(max_upload_bytes)
    elif isinstance(e, exceptions.MethodNotAllowed):
      allowed = [m for m in e.valid_methods if m not in ('HEAD', 'OPTIONS')]
      message = f'{flask.request.method} is not allowed here; use {", ".join(allowed)}'
    elif isinstance(e, exceptions.NotFound) and e.description == exceptions.NotFound.description:
      message = ('no such route (not found); the API is GET /models, GET /models/<model>, '
                 'POST /search?model=<model>, GET /health')
    response, status = error(e.code or 500, message)
    if isinstance(e, exceptions.MethodNotAllowed):
      response.headers['Allow'] = ', '.join(e.valid_methods)
    return response, status

  @app.errorhandler(Exception)
  def failed(e: Exception):
    app.logger.exception('request failed')  # The traceback goes to the log, not the client.
    return error(500, f'the server failed: {type(e).__name__}')

  @app.get('/health')
  def health():
    loaded = []
    for (model, version), searcher in searchers.items():
      entry = {'model': model, 'version': version}
      batcher = getattr(searcher, 'batcher', None)
      if batcher is not None:
        entry['batching'] = batcher.stats()
      loaded.append(entry)
    return flask.jsonify({'status': 'ok', 'loaded': loaded})

  @app.get('/models')
  def models():
    return flask.jsonify({'models': registry.summary_rows(registry_root)})

  @app.get('/models/<model>')
  def model_card(model: str):
    version = registry.resolve(registry_root, model, flask.request.args.get('version', 'latest'))
    return flask.jsonify(public_card(version.card))

  @app.post('/search')
  def search_endpoint():
    args = flask.request.args
    model = args.get('model')
    if not model:
      raise _BadRequest(400, 'the "model" parameter is required, e.g. /search?model=sknet')
    try:
      k = int(args.get('k', 10))
    except ValueError:
      raise _BadRequest(400, f'k={registry.shown(args.get("k"))} is not a whole number') from None
    if not 1 <= k <= search.MAX_K:
      raise _BadRequest(400, f'k={k}: choose 1 to {search.MAX_K}')

    upload = []  # Read once: a multipart file reads empty the second time.

    def queries_and_searcher(resolved: registry.ModelVersion):
      # The query is checked before the model is loaded.
      if not upload:
        upload.append(_upload())
      name, data = upload[0]
      queries = search.queries_from_bytes(data, name, *search.render_settings(resolved.card))
      return queries, searcher_for(resolved)

    # Resolved per request so a new push is served at once.
    queries, searcher = registry.load_newest(registry_root, model, args.get('version', 'latest'),
                                             queries_and_searcher)
    results = searcher.search(queries, k)
    return flask.jsonify({'model': searcher.model_version.model,
                          'version': searcher.model_version.version,
                          'gallery_size': len(searcher.gallery),
                          'queries': [r.to_dict() for r in results]})

  def loaded_gallery(model: str, version: int):
    # Without touching the cache's order or loading anything: a thumbnail is no use of a model.
    searcher = dict(searchers.items()).get((model, version))
    return None if searcher is None else searcher.gallery.png

  # The sketch pad at /; thumbnails of a loaded version come from its searcher's gallery.
  app.register_blueprint(pad.create_blueprint(registry_root, loaded_gallery=loaded_gallery))
  return app


class BatchedSearcher(search.Searcher):
  """A Searcher whose model calls go through a MicroBatcher; `close()` stops its worker."""

  def __init__(self, model_version: registry.ModelVersion, max_batch: int = batching.MAX_BATCH,
               max_wait: float = batching.MAX_WAIT_SECONDS):
    super().__init__(model_version)
    # Through a weak reference: no cycle keeps the model alive once the cache and the last
    # request let go of it.
    this = weakref.proxy(self)
    self.batcher = batching.MicroBatcher(
        lambda pngs: search.Searcher.embed(this, pngs), max_batch, max_wait,
        name=f'batcher-{model_version.model}-{model_version.version}')

  def embed(self, pngs):
    return self.batcher(pngs)

  def close(self) -> None:
    self.batcher.close()


def free_unused_memory() -> None:
  """Frees what dropped models left: a loaded SavedModel is full of reference cycles, which
  only the cycle collector frees, and glibc keeps freed heap unless asked to return it."""
  gc.collect()
  try:
    ctypes.CDLL(ctypes.util.find_library('c')).malloc_trim(0)
  except (OSError, AttributeError, TypeError):  # Not glibc (macOS, Windows, musl): no trim.
    pass


def public_card(value):
  """A model card as clients see it: artifact URIs left out (their ids stay), and every other
  server location (the data source, its files) cut to its last name."""
  if isinstance(value, dict):
    return {k: public_card(v) for k, v in value.items() if k != 'uri'}
  if isinstance(value, list):
    return [public_card(v) for v in value]
  if isinstance(value, str) and _LOCATION.match(value):
    return re.split(r'[\\/]', value.rstrip('/\\'))[-1]
  return value


class _BoundedBody:
  """WSGI middleware: a body of unknown length (chunked) is read up to the limit, and one over
  it is answered 413, never cut (Werkzeug stops reading such a body at the limit silently).

  Bodies with a Content-Length are left to Flask's MAX_CONTENT_LENGTH.
  """

  def __init__(self, app, limit: int):
    self._app = app
    self._limit = limit

  def __call__(self, environ, start_response):
    if environ.get('CONTENT_LENGTH') or not environ.get('wsgi.input_terminated'):
      return self._app(environ, start_response)
    stream, body = environ['wsgi.input'], bytearray()
    while len(body) <= self._limit:
      chunk = stream.read(min(64 * 1024, self._limit + 1 - len(body)))
      if not chunk:
        break
      body += chunk
    if len(body) > self._limit:
      return _json_error(413, errors.too_large_message(self._limit), start_response)
    # Now a body of known length, as Werkzeug reads one.
    environ = dict(environ, CONTENT_LENGTH=str(len(body)), **{'wsgi.input': io.BytesIO(body)})
    for key in ('wsgi.input_terminated', 'HTTP_TRANSFER_ENCODING'):
      environ.pop(key, None)
    return self._app(environ, start_response)


def _json_error(status: int, message: str, start_response):
  body = errors.error_body(status, message)
  start_response(f'{status} {exceptions.default_exceptions[status].name}',
                 [('Content-Type', 'application/json'), ('Content-Length', str(len(body))),
                  ('Connection', 'close')])
  return [body]


def _upload() -> Tuple[str, bytes]:
  """(name, bytes) of the query: a multipart file field `query`, or the raw request body."""
  request = flask.request
  if request.mimetype == 'multipart/form-data':
    upload = request.files.get('query')
    if upload is None:
      raise _BadRequest(400, 'the multipart form has no file field "query"')
    # The file's own name: a client's folders are no part of it (nor echoed back).
    name = re.split(r'[\\/]', upload.filename or '')[-1][:100]
    return name or 'query', upload.read()
  if request.mimetype == 'image/png' or request.mimetype in _NDJSON_TYPES:
    return 'request body', request.get_data()
  shown = (repr(request.mimetype) if _MEDIA_TYPE.fullmatch(request.mimetype)
           else '(none)' if not request.mimetype else '(not a media type)')
  raise _BadRequest(415, f'Content-Type {shown} is not supported; send image/png, '
                    'application/x-ndjson, or multipart/form-data with field "query"')
