"""The search server under load and across pushes: what `quickdraw-tfx serve` gives a deployment.

  .venv/bin/python benchmarks/serving.py concurrency --registry REGISTRY --model sknet \\
      --clients 20 --requests 25 --repeats 3 --output benchmarks/results/serving-concurrency.json
  .venv/bin/python benchmarks/serving.py memory --registry REGISTRY --model sknet --pushes 10 \\
      --output benchmarks/results/serving-memory.json
  .venv/bin/python benchmarks/serving.py batch --registry REGISTRY --model sknet --repeats 5 \\
      --output benchmarks/results/serving-batch.json
  .venv/bin/python benchmarks/serving.py pngs --registry REGISTRY --model sknet --clients 20 \\
      --repeats 3 --output benchmarks/results/serving-pngs.json

concurrency: each repeat starts a server, warms it up, then runs one client (`--requests`
searches one after another) and `--clients` clients at once (`--requests` each), for two
servers in turn: `quickdraw-tfx serve` as shipped (concurrent searches batched into one model
call) and the same server with batching off (each request calls the model itself, as before).
Queries are the version's own gallery PNGs, k=10. Reported per setting: requests/s, latency
p50/p95/p99 and errors (non-200 answers or failed connections); for the batched server also
the model calls the concurrent phase made and their sizes (from its /health).

memory: a server with `--max-models` (default 4) and, for comparison, one that keeps every
version (the old behaviour); the model's newest version is pushed again `--pushes` times into
a copy of the registry (each push a new version folder, as the Pusher makes one), and after
each push a search on `latest` loads it. The server's resident memory (RSS) is read from
/proc after each push.

pngs: `--clients` uploads at once of the worst PNGs, against `serve` and against the same
server with the PNG decoding it had before (benchmarks/serving_pngs.py): server memory before,
at its peak during and after the burst.

batch: the model call alone (`Searcher.embed`, no server) on batches of 1 to 64 gallery PNGs,
median of `--repeats` calls: what batching can save per image.

The servers run in their own processes; the clients run here, on the same cores.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import legacy_keras  # pylint: disable=g-import-not-at-top
legacy_keras.enable()  # Before TensorFlow is imported.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import serving_pngs  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> dict:
  from models import precision  # pylint: disable=g-import-not-at-top
  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                          capture_output=True).stdout.strip()
  dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT,
                         text=True, capture_output=True).stdout.strip()
  return {'cpu_model': precision.cpu_model(), 'cpus': os.cpu_count(),
          'flags': ' '.join(sorted(precision.cpu_flags())),
          'commit': commit + ('+changes' if dirty else ''),
          'load_average_at_start': os.getloadavg()}


class Server:
  """A server process; `batched=False` runs the app with plain, unbatched searchers, `entry`
  another server of this script (main's `_serve_*` commands)."""

  def __init__(self, registry_root: str, batched: bool = True, extra=(),
               entry: Optional[str] = None):
    entry = entry or (None if batched else '_serve_unbatched')
    command = ([sys.executable, os.path.abspath(__file__), entry] if entry else
               [sys.executable, '-m', 'pipeline.cli', 'serve'])
    self.process = subprocess.Popen(
        command + ['--registry', registry_root, '--port', '0', *extra], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = self.process.stdout.readline()
    found = re.search(r'http://[\d.]+:(\d+)/', line)
    if not found:
      self.process.kill()
      raise RuntimeError(f'the server did not start: {line!r}')
    self.port = int(found.group(1))

  def rss_mb(self, field: str = 'VmRSS') -> float:
    with open(f'/proc/{self.process.pid}/status') as f:
      kb = next(int(line.split()[1]) for line in f if line.startswith(field))
    return kb / 1024

  def reset_peak(self) -> None:
    """VmHWM, the peak RSS, starts again from the current RSS (Linux's clear_refs)."""
    with open(f'/proc/{self.process.pid}/clear_refs', 'w') as f:
      f.write('5')

  def stop(self) -> None:
    self.process.terminate()
    self.process.wait(60)


def search(port: int, png: bytes, connection=None, model: str = 'sknet'):
  """(status, seconds) of one search; a connection is reused when given."""
  own = connection is None
  connection = connection or http.client.HTTPConnection('127.0.0.1', port, timeout=300)
  start = time.perf_counter()
  try:
    connection.request('POST', f'/search?model={model}&k=10', body=png,
                       headers={'Content-Type': 'image/png'})
    response = connection.getresponse()
    response.read()
    status = response.status
  except (OSError, http.client.HTTPException):
    status = None
    connection.close()
  if own:
    connection.close()
  return status, time.perf_counter() - start


def load(port: int, pngs, clients: int, requests: int, model: str = 'sknet') -> dict:
  """`clients` threads, each sending `requests` searches over one keep-alive connection."""
  latencies, errors = [], []
  lock, start_together = threading.Lock(), threading.Barrier(clients)

  def client(index: int) -> None:
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=300)
    start_together.wait()
    for r in range(requests):
      status, seconds = search(port, pngs[(index * requests + r) % len(pngs)], connection,
                               model)
      with lock:
        latencies.append(seconds)
        if status != 200:
          errors.append(status)
    connection.close()

  threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
  start = time.perf_counter()
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  wall = time.perf_counter() - start
  p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
  return {'clients': clients, 'requests': len(latencies), 'seconds': wall,
          'requests_per_second': len(latencies) / wall, 'p50': p50, 'p95': p95, 'p99': p99,
          'p99_over_p50': p99 / p50, 'errors': len(errors)}


def batching_stats(port: int, model: str) -> Optional[dict]:
  """The server's batching counters for the loaded version of `model` (None: not batched)."""
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  try:
    connection.request('GET', '/health')
    loaded = json.loads(connection.getresponse().read())['loaded']
  finally:
    connection.close()
  stats = [entry.get('batching') for entry in loaded if entry['model'] == model]
  return stats[-1] if stats else None


def batches_between(before: Optional[dict], after: Optional[dict]) -> Optional[dict]:
  """Model calls made between two readings of the counters, and their sizes."""
  if before is None or after is None:
    return None
  sizes = {int(size): count - before['batch_sizes'].get(size, 0)
           for size, count in after['batch_sizes'].items()}
  sizes = {size: count for size, count in sorted(sizes.items()) if count}
  images = sum(size * count for size, count in sizes.items())
  calls = sum(sizes.values())
  return {'model_calls': calls, 'images': images,
          'mean_images_per_call': images / calls if calls else 0.0,
          'calls_by_size': {str(size): count for size, count in sizes.items()}}


def gallery_pngs(registry_root: str, model: str):
  from serving import registry  # pylint: disable=g-import-not-at-top
  version = registry.resolve(registry_root, model, need_gallery=True)
  return registry.load_gallery(version).png


def cmd_concurrency(args) -> dict:
  pngs = gallery_pngs(args.registry, args.model)
  extra = ['--threads', str(args.threads), '--max-batch', str(args.max_batch),
           '--batch-wait-ms', str(args.batch_wait_ms)]
  settings = {'batched': True, 'unbatched': False}
  runs = {name: [] for name in settings}
  for repeat in range(args.repeats):
    for name, batched in (settings.items() if repeat % 2 == 0 else
                          reversed(settings.items())):
      server = Server(args.registry, batched, extra if batched else extra[:2])
      try:
        for png in pngs[:5]:  # Loads the model.
          search(server.port, png, model=args.model)
        load(server.port, pngs, args.clients, 2, args.model)
        one = load(server.port, pngs, 1, args.requests, args.model)
        before = batching_stats(server.port, args.model)
        many = load(server.port, pngs, args.clients, args.requests, args.model)
        batches = batches_between(before, batching_stats(server.port, args.model))
      finally:
        server.stop()
      many['speedup_over_one_client'] = (many['requests_per_second'] /
                                         one['requests_per_second'])
      runs[name].append({'repeat': repeat, 'one_client': one, 'concurrent': many,
                         'concurrent_batches': batches})
      print(f'repeat {repeat} {name:>9}: 1 client {one["requests_per_second"]:.1f}/s '
            f'p50 {one["p50"]:.3f}s | {args.clients} clients '
            f'{many["requests_per_second"]:.1f}/s p50 {many["p50"]:.3f} p95 {many["p95"]:.3f} '
            f'p99 {many["p99"]:.3f} errors {many["errors"]}'
            + (f' | {batches["mean_images_per_call"]:.1f} images per model call'
               if batches else ''), file=sys.stderr, flush=True)
  medians = {name: {
      part: {key: float(np.median([r[part][key] for r in rs]))
             for key in rs[0][part] if key not in ('clients', 'requests')}
      for part in ('one_client', 'concurrent')} for name, rs in runs.items()}
  return {'clients': args.clients, 'requests_per_client': args.requests,
          'threads': args.threads, 'max_batch': args.max_batch,
          'batch_wait_ms': args.batch_wait_ms,
          'runs': runs, 'medians': medians}


def cmd_batch(args) -> dict:
  """The model call alone (Searcher.embed, in this process) per batch size."""
  from serving import registry  # pylint: disable=g-import-not-at-top
  from serving import search as search_lib  # pylint: disable=g-import-not-at-top
  searcher = search_lib.Searcher(registry.resolve(args.registry, args.model, need_gallery=True))
  pngs = searcher.gallery.png
  rows = {}
  for size in (1, 2, 4, 8, 16, 32, 64):
    batch = [pngs[i % len(pngs)] for i in range(size)]
    searcher.embed(batch)  # Warm-up.
    seconds = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      searcher.embed(batch)
      seconds.append(time.perf_counter() - start)
    rows[size] = {'seconds': seconds, 'ms_per_image': float(np.median(seconds)) / size * 1000}
    print(f'batch {size}: {rows[size]["ms_per_image"]:.1f} ms per image', file=sys.stderr,
          flush=True)
  return {'batches': rows}


def cmd_pngs(args) -> dict:
  return serving_pngs.cmd_pngs(args, Server, search, gallery_pngs(args.registry, args.model)[0])


def cmd_memory(args) -> dict:
  from serving import registry  # pylint: disable=g-import-not-at-top
  source = registry.resolve(args.registry, args.model, need_gallery=True)
  pngs = gallery_pngs(args.registry, args.model)
  result = {}
  for name, max_models in (('bounded', args.max_models), ('every_version', 1000)):
    work = tempfile.mkdtemp(prefix='serving-memory-')
    try:
      model_dir = os.path.join(work, args.model)
      push(source.path, model_dir, 1)
      server = Server(work, extra=['--max-models', str(max_models)])
      try:
        search(server.port, pngs[0], model=args.model)
        rss = [server.rss_mb()]
        for version in range(2, args.pushes + 2):
          push(source.path, model_dir, version)
          status, _ = search(server.port, pngs[1], model=args.model)
          if status != 200:
            raise RuntimeError(f'search after a push answered {status}')
          rss.append(server.rss_mb())
          print(f'{name}: {len(rss) - 1} pushes, RSS {rss[-1]:.0f} MB', file=sys.stderr,
                flush=True)
      finally:
        server.stop()
    finally:
      shutil.rmtree(work)
    full = max_models - 1  # rss[i] is taken with 1 + i versions pushed: the cache is full here.
    result[name] = {'max_models': max_models, 'rss_mb_after_each_push': rss,
                    'growth_mb': rss[-1] - rss[0],
                    'growth_once_the_cache_is_full_mb': (rss[-1] - rss[full] if full < len(rss)
                                                         else None)}
  return {'pushes': args.pushes, 'model_version_mb': _size_mb(source.path), **result}


def push(source: str, model_dir: str, version: int) -> None:
  """A new version folder with the files of `source`, published as the registry does: filled
  under a temporary name, then renamed to its number."""
  staging = os.path.join(model_dir, f'.tmp-{version}')
  shutil.copytree(source, staging)
  os.rename(staging, os.path.join(model_dir, str(version)))


def _size_mb(folder: str) -> float:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
             for f in files) / 2**20


def serve_unbatched(argv) -> int:
  """The server of `serve`, with plain searchers: each request calls the model itself."""
  from serving import http as search_http  # pylint: disable=g-import-not-at-top
  from serving import search as search_lib  # pylint: disable=g-import-not-at-top
  from serving import server  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  server.add_arguments(parser)
  parser.add_argument('--registry', required=True)
  args = parser.parse_args(argv)
  app = search_http.create_app(args.registry, load_searcher=search_lib.Searcher)
  running = server.make_server(app, args.host, args.port, args.threads)
  print(f'unbatched on http://{args.host}:{running.effective_port}/search', flush=True)
  running.run()
  return 0


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ['_serve_unbatched']:
    return serve_unbatched(argv[1:])
  if argv[:1] == [serving_pngs.UNBOUNDED_ENTRY]:
    return serving_pngs.serve_unbounded(argv[1:])
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('command', choices=('concurrency', 'memory', 'batch', 'pngs'))
  parser.add_argument('--registry', required=True, help='a registry with a pushed --model')
  parser.add_argument('--model', default='sknet')
  parser.add_argument('--clients', type=int, default=20)
  parser.add_argument('--requests', type=int, default=25, help='per client')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--threads', type=int, default=20, help="the server's --threads")
  parser.add_argument('--max-batch', type=int, default=32, help="the server's --max-batch")
  parser.add_argument('--batch-wait-ms', type=float, default=2.0)
  parser.add_argument('--pushes', type=int, default=10)
  parser.add_argument('--max-models', type=int, default=4)
  parser.add_argument('--output', help='also write the result as JSON here')
  args = parser.parse_args(argv)
  result = {'command': args.command,
            'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'machine': machine(), **globals()['cmd_' + args.command](args)}
  result['load_average_at_end'] = os.getloadavg()
  text = json.dumps(result, indent=2, default=float)
  print(text)
  if args.output:
    with open(args.output, 'w') as f:
      f.write(text + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
