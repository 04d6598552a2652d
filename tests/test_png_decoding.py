"""PNG queries under a memory budget (issue 26): the decoded size is checked from the header
before anything is decoded, large images are reduced as soon as they are decoded, at most
MAX_CONCURRENT_DECODES decode at once, and messages carry no object reprs."""
import io
import struct
import threading
import time
import zlib

import numpy as np
from PIL import Image, ImageDraw
import pytest
import tensorflow as tf

from serving import png_decoding
from serving import search


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def _declared_png(width, height, depth, colour, channels):
  """A valid PNG of blank rows, written row by row: 130 KB for 4096x4096 RGBA at 16 bits."""
  row = b'\x00' * (1 + width * channels * depth // 8)  # Filter byte, then the samples.
  packer = zlib.compressobj(9)
  idat = b''.join(packer.compress(row) for _ in range(height)) + packer.flush()
  header = struct.pack('>IIBBBBB', width, height, depth, colour, 0, 0, 0)
  return (png_decoding.PNG_MAGIC + _chunk(b'IHDR', header) + _chunk(b'IDAT', idat)
          + _chunk(b'IEND', b''))


def test_a_png_declaring_more_than_the_budget_is_refused_before_decoding(monkeypatch):
  bomb = _declared_png(4096, 4096, 16, 6, 4)  # RGBA at 16 bits: 128 MiB decoded.
  assert len(bomb) < 200_000
  assert png_decoding.declared_size(bomb) == (4096, 4096, 4096 * 4096 * 8)

  def no_decoding(*args, **kwargs):
    raise AssertionError('the PNG was opened for decoding')

  monkeypatch.setattr(png_decoding.Image, 'open', no_decoding)
  with pytest.raises(search.QueryError, match=rf'^bomb.png: the image is 4096x4096 pixels and '
                                              rf'decodes to {4096 * 4096 * 8} bytes; the limit '
                                              rf'is {png_decoding.MAX_DECODED_BYTES}'):
    search.queries_from_bytes(bomb, 'bomb.png')
  # Within the budget: the same size in gray at 8 bits is decoded (16 MiB).
  monkeypatch.undo()
  with pytest.raises(search.QueryError, match='an empty drawing'):  # Blank, but decoded.
    search.queries_from_bytes(_declared_png(4096, 4096, 8, 0, 1), 'gray.png')


@pytest.mark.parametrize('header, message', [
    (struct.pack('>IIBBBBB', 64, 64, 16, 3, 0, 0, 0), 'colour type 3 at 16 bits'),
    (struct.pack('>IIBBBBB', 64, 64, 8, 5, 0, 0, 0), 'colour type 5 at 8 bits'),
])
def test_a_header_that_is_not_png_is_refused(header, message):
  data = png_decoding.PNG_MAGIC + _chunk(b'IHDR', header) + _chunk(b'IEND', b'')
  with pytest.raises(search.QueryError, match=f'q: not a readable PNG image .*{message}'):
    search.queries_from_bytes(data, 'q')


def _large_drawing(mode: str) -> bytes:
  image = Image.new(mode, (3000, 2000), 'white' if mode != 'LA' else (255, 255))
  pen = ImageDraw.Draw(image)
  ink = 'black' if mode != 'LA' else (0, 255)
  pen.line([(100, 100), (2900, 1900)], fill=ink, width=40)
  pen.ellipse([600, 300, 1800, 1500], outline=ink, width=40)
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def _model_view(png: bytes) -> np.ndarray:
  """What serving_png makes of a PNG: one channel, area-resized to 128x128."""
  image = tf.io.decode_png(png, channels=1)
  return tf.image.resize(image, [128, 128], method='area').numpy()[:, :, 0]


@pytest.mark.parametrize('mode', ['L', 'RGB', 'LA'])
def test_a_large_image_is_reduced_to_what_the_model_needs_and_looks_the_same_to_it(mode):
  png = _large_drawing(mode)
  [query] = search.queries_from_bytes(png, 'big.png')
  with Image.open(io.BytesIO(query.png)) as sent:
    assert sent.mode == 'L'
    assert sent.size == (png_decoding.REDUCED_SIDE, png_decoding.REDUCED_SIDE)
  difference = np.abs(_model_view(query.png) - _model_view(png))
  # Out of 255, at stroke edges only: Pillow's box filter weighs whole source pixels where
  # TensorFlow's area resize weighs the fractions of them inside each cell.
  assert difference.max() < 10 and difference.mean() < 0.5, (difference.max(), difference.mean())


def test_at_most_the_bounded_number_of_decodes_run_at_once(monkeypatch):
  running, most, lock = [0], [0], threading.Lock()
  reduced = png_decoding._reduced  # pylint: disable=protected-access

  def slow(image):
    with lock:
      running[0] += 1
      most[0] = max(most[0], running[0])
    time.sleep(0.2)  # Long enough for every thread to be waiting.
    with lock:
      running[0] -= 1
    return reduced(image)

  monkeypatch.setattr(png_decoding, '_reduced', slow)
  png = _large_drawing('L')
  threads = [threading.Thread(target=search.queries_from_bytes, args=(png, 'q'))
             for _ in range(3 * png_decoding.MAX_CONCURRENT_DECODES)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert most[0] == png_decoding.MAX_CONCURRENT_DECODES


def test_pillow_messages_come_without_object_reprs():
  header = struct.pack('>IIBBBBB', 64, 64, 8, 0, 0, 0, 0)
  broken = png_decoding.PNG_MAGIC + _chunk(b'IHDR', header)[:-4] + b'\x00\x00\x00\x00'
  with pytest.raises(search.QueryError, match='^q: not a readable PNG image') as raised:
    search.queries_from_bytes(broken + _chunk(b'IEND', b''), 'q')
  assert ' at 0x' not in str(raised.value) and 'BytesIO' not in str(raised.value)
  assert png_decoding.without_object_reprs(
      'cannot identify image file <_io.BytesIO object at 0x7f5ea55f86d0>') == (
          'cannot identify image file the data')
