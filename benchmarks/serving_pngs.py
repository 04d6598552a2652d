"""The `pngs` command of benchmarks/serving.py: the search server's memory while `--clients`
upload the worst PNGs at once.

Two servers in turn, each in its own process and with the model loaded first: `quickdraw-tfx
serve` as shipped, whose PNG decoding (serving/png_decoding.py) checks the decoded size from
the header, reduces a large image as soon as it is decoded and decodes at most two large ones
at once; and the same server with the decoding it replaced (`unbounded_model_png`: the whole
image decoded and converted at full size, at any bit depth, in every request thread at once).
Two PNGs, each 4096x4096 RGBA of white paper with a band of ink: at 16 bits per sample (about
130 KB on the wire, 128 MiB decoded: the probe of issue 26, which the shipped server refuses
from its header) and at 8 bits (64 MiB decoded: the largest it decodes).

Reported per server and PNG: the answers by status, the server's RSS just before the burst,
its peak during it (VmHWM, reset just before) and its RSS 2 s after the last answer.
"""
import io
import sys
import threading
import time
import zlib
from typing import Callable

import numpy as np

UNBOUNDED_ENTRY = '_serve_unbounded_pngs'
SERVERS = ('serve', 'unbounded_decoding')


def worst_case_png(depth: int, side: int = 4096, ink_rows: int = 64) -> bytes:
  """An RGBA PNG of `side` x `side` at `depth` bits per sample: white paper, a band of black
  ink across the middle. Compresses to a few hundred KB at most."""
  def chunk(kind: bytes, data: bytes) -> bytes:
    return (len(data).to_bytes(4, 'big') + kind + data
            + zlib.crc32(kind + data).to_bytes(4, 'big'))
  sample = depth // 8
  paper = b'\x00' + b'\xff' * (side * 4 * sample)  # Each row: a filter byte, then pixels.
  ink = b'\x00' + (b'\x00' * 3 * sample + b'\xff' * sample) * side
  packer = zlib.compressobj(9)
  rows = [ink if abs(row - side // 2) < ink_rows // 2 else paper for row in range(side)]
  idat = b''.join(packer.compress(row) for row in rows) + packer.flush()
  header = side.to_bytes(4, 'big') * 2 + bytes([depth, 6, 0, 0, 0])
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', idat)
          + chunk(b'IEND', b''))


CASES = {'rgba_16bit_4096': lambda: worst_case_png(16),
         'rgba_8bit_4096': lambda: worst_case_png(8)}


def unbounded_model_png(data: bytes) -> bytes:
  """The PNG decoding the server had before serving/png_decoding.py: the limits on bytes and
  sides only, the whole image decoded and converted to gray on white at full size, and the
  full-size gray PNG sent on to the model."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from serving import png_decoding  # pylint: disable=g-import-not-at-top
  if len(data) > png_decoding.MAX_PNG_BYTES:
    raise png_decoding.PngError(f'the PNG is {len(data)} bytes')
  try:
    with Image.open(io.BytesIO(data)) as image:
      width, height = image.size
      if not (png_decoding.MIN_SIDE <= width <= png_decoding.MAX_SIDE
              and png_decoding.MIN_SIDE <= height <= png_decoding.MAX_SIDE):
        raise png_decoding.PngError(f'the image is {width}x{height} pixels')
      gray = png_decoding._on_white(image)  # pylint: disable=protected-access
      low, high = gray.getextrema()
      if gray is not image:
        buffer = io.BytesIO()
        gray.save(buffer, format='PNG')
        data = buffer.getvalue()
  except png_decoding.PngError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise png_decoding.PngError(f'not a readable PNG image ({type(e).__name__})') from e
  if low == high:
    raise png_decoding.PngError('an empty drawing')
  return data


def serve_unbounded(argv) -> int:
  """`quickdraw-tfx serve` with the decoding it replaced (same arguments)."""
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  from serving import png_decoding  # pylint: disable=g-import-not-at-top
  png_decoding.model_png = unbounded_model_png  # serving/search.py calls it through the module.
  return cli.main(['serve', *argv])


def cmd_pngs(args, server_class, search: Callable, warm_up: bytes) -> dict:
  """`server_class(registry, entry=...)` starts a server (entry None: `serve` itself);
  `search(port, png, model=...)` returns (status, seconds) of one search."""
  cases = {name: make() for name, make in CASES.items()}
  runs = {server: {name: [] for name in cases} for server in SERVERS}
  for repeat in range(args.repeats):
    for server_name in (SERVERS if repeat % 2 == 0 else reversed(SERVERS)):
      for name, png in cases.items():
        entry = None if server_name == 'serve' else UNBOUNDED_ENTRY
        server = server_class(args.registry, entry=entry)
        try:
          status, _ = search(server.port, warm_up, model=args.model)  # Loads the model.
          if status != 200:
            raise RuntimeError(f'the warm-up search answered {status}')
          time.sleep(1)
          before = server.rss_mb()
          server.reset_peak()
          answers, start = [], time.perf_counter()
          threads = [threading.Thread(target=lambda: answers.append(
              search(server.port, png, model=args.model)[0])) for _ in range(args.clients)]
          for thread in threads:
            thread.start()
          for thread in threads:
            thread.join()
          seconds = time.perf_counter() - start
          peak = server.rss_mb('VmHWM')
          time.sleep(2)
          after = server.rss_mb()
        finally:
          server.stop()
        row = {'repeat': repeat, 'png_bytes': len(png), 'seconds': seconds,
               'answers': {str(s): answers.count(s) for s in sorted(set(answers), key=str)},
               'rss_before_mb': before, 'peak_rss_mb': peak, 'rss_after_mb': after,
               'peak_over_before_mb': peak - before, 'after_over_before_mb': after - before}
        runs[server_name][name].append(row)
        print(f'repeat {repeat} {server_name} {name}: answers {row["answers"]}, RSS '
              f'{before:.0f} -> peak {peak:.0f} -> {after:.0f} MB in {seconds:.1f} s',
              file=sys.stderr, flush=True)
  keys = ('seconds', 'rss_before_mb', 'peak_rss_mb', 'rss_after_mb', 'peak_over_before_mb',
          'after_over_before_mb')
  medians = {server: {name: {key: float(np.median([r[key] for r in rows])) for key in keys}
                      for name, rows in by_case.items()} for server, by_case in runs.items()}
  return {'clients': args.clients, 'png_bytes': {name: len(png) for name, png in cases.items()},
          'runs': runs, 'medians': medians}
