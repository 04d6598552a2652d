"""The production HTTP server for the search app: waitress, with bounds on everything.

waitress reads each request (headers and body, chunked or not) asynchronously and hands it
to one of `threads` workers only once it is complete, so slow or stalled clients hold no
worker; a connection idle for `timeout` seconds, mid-upload or not, is closed, and so is one
whose request is not complete `request_timeout` seconds after its first byte, however often
bytes trickle in (waitress's idle timer restarts with each byte); at most `connection_limit`
connections are open at once (an idle one costs a socket and a few KB, no thread); and a body
over `max_upload_bytes` is answered with 413 as soon as its Content-Length (or, chunked, its
running size) shows it. The limit is the body's own size, inclusive: a body of exactly
`max_upload_bytes` is taken, and chunk framing does not count (waitress counts both).

Errors the server answers itself (413, malformed requests) are JSON like the app's. After
such an error the server reads and drops the rest of the upload for a few seconds before
closing, so a client still sending gets the 413 instead of a connection reset.
"""
import argparse
import signal
import socket
import sys
import time

from waitress import channel as waitress_channel
from waitress import parser as waitress_parser
from waitress import server as waitress_server
from waitress import task as waitress_task
from waitress import utilities as waitress_utilities

from serving import batching
from serving import errors
from serving import model_cache

DEFAULT_THREADS = 20
DEFAULT_TIMEOUT_SECONDS = 30
# Time for a whole request to arrive: a 4 MiB upload at 100 KB/s, a sketch at any speed.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60
# Idle connections cost no thread, only a socket and its buffers: room for many slow clients.
DEFAULT_CONNECTION_LIMIT = 1000
# Files the process needs besides its connections (models, libraries, logs).
SPARE_OPEN_FILES = 256
# Chunk framing may take 5 bytes per body byte (1-byte chunks): waitress's own count of the
# bytes on the wire is only a backstop, the body limit is _BodyLimitParser's.
WIRE_BYTES_PER_BODY_BYTE = 8
LINGER_SECONDS = 5.0


class _JsonErrorTask(waitress_task.ErrorTask):
  """waitress's own error responses (413, 400 malformed request, 500) as the app's JSON."""

  def execute(self):
    e = self.request.error
    if e.code == 413:
      message = errors.too_large_message(self.channel.parser_class.body_limit)
    else:
      message = f'{e.reason.lower()}: {e.body}'
    body = errors.error_body(e.code, message)
    self.status = f'{e.code} {e.reason}'
    self.response_headers.append(('Content-Type', 'application/json'))
    self.set_close_on_finish()
    self.content_length = len(body)
    self.write(body)
    self.channel.linger = True


class _BodyLimitParser(waitress_parser.HTTPRequestParser):
  """A request whose body, as the app sees it, is over `body_limit` bytes is refused (413)."""

  body_limit = errors.MAX_UPLOAD_BYTES  # Set per server by make_server.

  def received(self, data):
    consumed = super().received(data)
    if not self.error and self.headers_finished:
      size = (len(self.body_rcv) if self.chunked and self.body_rcv is not None
              else self.content_length)
      if size > self.body_limit:
        self.error = waitress_utilities.RequestEntityTooLarge(
            f'exceeds max_body of {self.body_limit}')
        self.completed = True
    return consumed


class _Channel(waitress_channel.HTTPChannel):
  """A connection that, closing after an error, first drains what the client still sends;
  and is closed when a request takes over `request_timeout` seconds to arrive."""

  error_task_class = _JsonErrorTask
  parser_class = _BodyLimitParser
  request_timeout = DEFAULT_REQUEST_TIMEOUT_SECONDS  # Set per server by make_server.
  linger = False  # Set by _JsonErrorTask: the client may still be sending its body.
  _linger_until = None
  _request_started = None  # When the first byte of the request still arriving came.

  def received(self, data):
    result = super().received(data)
    if self.request is None:
      self._request_started = None
    elif self._request_started is None:
      self._request_started = time.monotonic()
    return result

  def handle_close(self):
    if self.linger and self._linger_until is None and self.connected and self.socket:
      try:
        self.socket.shutdown(socket.SHUT_WR)  # The response is out; FIN after it.
      except OSError:
        pass
      else:
        self._linger_until = time.monotonic() + LINGER_SECONDS
        self.will_close = self.close_when_flushed = False
        return
    super().handle_close()

  def readable(self):
    # The event loop asks every connection this at least once a second.
    if (self._request_started is not None and self._linger_until is None
        and time.monotonic() - self._request_started > self.request_timeout):
      self.will_close = True  # writable() says so, and handle_write() closes.
      self._request_started = None
    return self._linger_until is not None or super().readable()

  def writable(self):
    if self._linger_until is not None:
      return time.monotonic() > self._linger_until  # Then handle_write closes.
    return super().writable()

  def handle_read(self):
    if self._linger_until is None:
      super().handle_read()
      return
    try:
      data = self.recv(self.adj.recv_bytes)  # Dropped; b'' (client done) closes.
    except OSError:
      data = b''
    if not data and self.socket is not None:
      super().handle_close()

  def handle_write(self):
    if self._linger_until is not None:
      super().handle_close()
      return
    super().handle_write()


def make_server(app, host: str = '127.0.0.1', port: int = 8080,
                threads: int = DEFAULT_THREADS, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                connection_limit: int = DEFAULT_CONNECTION_LIMIT,
                max_upload_bytes: int = errors.MAX_UPLOAD_BYTES,
                request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS):
  """A waitress server for `app` (not started: call .run(), and .close() to stop).

  `port=0` picks a free port; the server's `effective_port` tells which.
  """
  server = waitress_server.create_server(
      app, host=host, port=port, threads=threads, channel_timeout=timeout,
      # How often idle connections are looked for: a fraction of the timeout.
      cleanup_interval=max(0.5, min(5.0, timeout / 4)),
      connection_limit=connection_limit,
      max_request_body_size=max_upload_bytes * WIRE_BYTES_PER_BODY_BYTE + 1,
      # poll() has no 1,024-descriptor ceiling (select() does); waitress uses select() where
      # there is no poll() (Windows).
      asyncore_use_poll=True, ident='quickdraw-tfx')
  parser = type('BodyLimitParser', (_BodyLimitParser,), {'body_limit': max_upload_bytes})
  channel = type('Channel', (_Channel,), {'parser_class': parser,
                                          'request_timeout': request_timeout})
  listeners = getattr(server, 'map', {}).values() if not isinstance(
      server, waitress_server.BaseWSGIServer) else [server]
  for listener in listeners:
    if isinstance(listener, waitress_server.BaseWSGIServer):
      listener.channel_class = channel
  return server


def fit_open_files(connection_limit: int) -> int:
  """Raises the soft limit on open files (1,024 on many systems) to fit `connection_limit`
  connections where the hard limit allows; returns how many connections fit."""
  try:
    import resource  # pylint: disable=g-import-not-at-top  # POSIX only.
  except ImportError:
    return connection_limit
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  wanted = connection_limit + SPARE_OPEN_FILES
  if soft != resource.RLIM_INFINITY and soft < wanted:
    soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
  if soft == resource.RLIM_INFINITY:
    return connection_limit
  return max(1, min(connection_limit, soft - SPARE_OPEN_FILES))


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The `serve` command's options (serving/cli.py)."""
  parser.add_argument('--host', default='127.0.0.1',
                      help='address to listen on (default 127.0.0.1; 0.0.0.0 for all)')
  parser.add_argument('--port', type=int, default=8080, help='port (default 8080; 0 picks one)')
  parser.add_argument('--threads', type=int, default=DEFAULT_THREADS,
                      help=f'requests served at once (default {DEFAULT_THREADS}); slow '
                      'uploads are read without holding one')
  parser.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT_SECONDS,
                      help='seconds before a connection that sends nothing, mid-upload or '
                      f'not, is closed (default {DEFAULT_TIMEOUT_SECONDS})')
  parser.add_argument('--request-timeout', type=float, default=DEFAULT_REQUEST_TIMEOUT_SECONDS,
                      help='seconds a request (headers and body) may take to arrive, however '
                      'often its bytes come, before its connection is closed (default '
                      f'{DEFAULT_REQUEST_TIMEOUT_SECONDS})')
  parser.add_argument('--connection-limit', type=int, default=DEFAULT_CONNECTION_LIMIT,
                      help=f'open connections at most (default {DEFAULT_CONNECTION_LIMIT}; the '
                      'limit on open files is raised to fit them where the system allows)')
  parser.add_argument('--max-upload-bytes', type=int, default=errors.MAX_UPLOAD_BYTES,
                      help='larger request bodies get 413, chunked or not (default '
                      f'{errors.MAX_UPLOAD_BYTES})')
  parser.add_argument('--max-models', type=int, default=model_cache.DEFAULT_CAPACITY,
                      help='model versions kept loaded, least recently used out (default '
                      f'{model_cache.DEFAULT_CAPACITY}; each takes a few hundred MB)')
  parser.add_argument('--max-batch', type=int, default=batching.MAX_BATCH,
                      help='query images per model call when concurrent searches are '
                      f'batched (default {batching.MAX_BATCH})')
  parser.add_argument('--batch-wait-ms', type=float, default=batching.MAX_WAIT_SECONDS * 1000,
                      help='how long a model call waits for more searches to join it '
                      f'(default {batching.MAX_WAIT_SECONDS * 1000:g})')


def check_arguments(args) -> str:
  """A message naming the first bad option, or ''."""
  for name in ('threads', 'connection_limit', 'max_upload_bytes', 'max_models', 'max_batch'):
    if getattr(args, name) < 1:
      return f'--{name.replace("_", "-")} {getattr(args, name)}: must be at least 1'
  if args.timeout <= 0 or args.request_timeout <= 0 or args.batch_wait_ms < 0:
    return '--timeout must be above 0, as must --request-timeout; --batch-wait-ms at least 0'
  if not 0 <= args.port <= 65535:
    return f'--port {args.port}: choose 0 to 65535'
  return ''


def deployed_server(args, registry_root: str):
  """The server `serve` runs, built from the `serve` command's arguments (not started)."""
  from serving import http  # pylint: disable=g-import-not-at-top  # Loads TensorFlow.
  app = http.create_app(registry_root, max_upload_bytes=args.max_upload_bytes,
                        max_models=args.max_models, max_batch=args.max_batch,
                        batch_wait=args.batch_wait_ms / 1000)
  connection_limit = fit_open_files(args.connection_limit)
  if connection_limit < args.connection_limit:
    print(f'quickdraw-tfx: --connection-limit {args.connection_limit} lowered to '
          f'{connection_limit}: the system allows no more open files (ulimit -Hn)',
          file=sys.stderr, flush=True)
  return make_server(app, args.host, args.port, args.threads, args.timeout,
                     connection_limit, args.max_upload_bytes, args.request_timeout)


def serve(args, registry_root: str) -> int:
  """Runs the server until interrupted (Ctrl-C or SIGTERM)."""
  server = deployed_server(args, registry_root)
  # A container stop (SIGTERM) ends the loop like Ctrl-C does.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  port = getattr(server, 'effective_port', args.port)
  print(f'quickdraw-tfx: search endpoint on http://{args.host}:{port}/search '
        f'({args.threads} threads, {args.max_models} models loaded at most)', flush=True)
  server.run()
  return 0
