"""PNG queries decoded under a memory budget, into what the model needs: a small grayscale PNG.

A PNG is a few KB on the wire but decodes to width x height x channels x bytes per sample,
so the upload size says little about the memory it takes. Before anything is decoded the
header (IHDR) is checked: each side MIN_SIDE to MAX_SIDE, the decoded size within
MAX_DECODED_BYTES. Pillow cannot decode a PNG at a reduced size (its draft mode is JPEG's), so
a large image is box-resized to REDUCED_SIDE as soon as it is decoded, before any conversion
copies it whole. Images larger than that are decoded by MAX_CONCURRENT_DECODES threads of their
own, whatever the number of requests; each decode holds the decoded image and one copy of it in
Pillow's 4 bytes per pixel (128 MiB for a 4096x4096 image), the rest is small.
"""
import io
import re
import struct
from concurrent import futures
from typing import Tuple

from PIL import Image

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
MAX_PNG_BYTES = 2 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 16, 4096
# A 4096x4096 canvas export in RGBA at 8 bits; 16 bits per sample at that size is refused.
MAX_DECODED_BYTES = 64 * 1024 * 1024
# A multiple of the model's 128x128 (and of 64 and 32): its area resize then averages whole
# cells of the box-resized image, so it sees what the full image would have shown it.
REDUCED_SIDE = 512
MAX_CONCURRENT_DECODES = 2
_decoder = futures.ThreadPoolExecutor(MAX_CONCURRENT_DECODES, thread_name_prefix='png-decoder')

# Samples per pixel by PNG colour type, and the bit depths each type allows (PNG spec, IHDR).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Pillow names its file objects in some messages ("<_io.BytesIO object at 0x7f...>").
_OBJECT_REPR = re.compile(r'<[^<>]* at 0x[0-9a-fA-F]+>')


class PngError(ValueError):
  """A PNG that is refused; the message says why and what to send instead."""


def without_object_reprs(text: str) -> str:
  return _OBJECT_REPR.sub('the data', text)


def declared_size(data: bytes) -> Tuple[int, int, int]:
  """(width, height, decoded bytes) as the IHDR chunk declares them, nothing decoded."""
  if len(data) < 33 or not data.startswith(PNG_MAGIC) or data[12:16] != b'IHDR':
    raise PngError('not a readable PNG image (no IHDR header after the signature)')
  width, height, depth, colour = struct.unpack('>IIBB', data[16:26])
  if depth not in _DEPTHS.get(colour, ()):
    raise PngError(f'not a readable PNG image (colour type {colour} at {depth} bits per '
                   'sample is not PNG)')
  # Samples under 8 bits are decoded to one byte each.
  return width, height, width * height * _CHANNELS[colour] * max(1, depth // 8)


def _reduced(image: Image.Image) -> Image.Image:
  """The decoded image in a mode Pillow can resize, each side over REDUCED_SIDE box-resized
  to it (Pillow premultiplies alpha for it)."""
  if image.mode == 'P':
    image = image.convert('RGBA' if image.has_transparency_data else 'L')
  elif image.mode.startswith('I'):  # 16-bit gray: scaled to 8 bits, as TensorFlow decodes it.
    image = image.point(lambda value: value * (1 / 257)).convert('L')
  elif image.mode not in ('L', 'LA', 'RGB', 'RGBA'):
    image = image.convert('RGBA')
  size = (min(image.width, REDUCED_SIDE), min(image.height, REDUCED_SIDE))
  return image.resize(size, Image.Resampling.BOX) if size != image.size else image


def _on_white(image: Image.Image) -> Image.Image:
  """Grayscale, transparent pixels as white paper: what a person sees, what the model needs.

  `serving_png` decodes to one channel and drops alpha, so a canvas export (black strokes on
  transparent black) would reach the model as black on black.
  """
  if image.mode == 'L' and 'transparency' not in image.info:
    return image
  paper = Image.new('RGBA', image.size, (255, 255, 255, 255))
  return Image.alpha_composite(paper, image.convert('RGBA')).convert('L')


def _decoded(data: bytes) -> Tuple[bytes, int, int]:
  """(the PNG for the model, lowest and highest gray) of a PNG whose header was checked."""
  try:
    with Image.open(io.BytesIO(data), formats=['PNG']) as image:
      original = image.mode == 'L' and 'transparency' not in image.info
      reduced = _reduced(image)
      gray = _on_white(reduced)
      low, high = gray.getextrema()
      if not (original and reduced is image):
        buffer = io.BytesIO()
        gray.save(buffer, format='PNG')
        data = buffer.getvalue()
  except Exception as e:  # pylint: disable=broad-except  # Pillow raises many kinds.
    raise PngError(f'not a readable PNG image ({without_object_reprs(str(e))})') from e
  return data, low, high


def model_png(data: bytes) -> bytes:
  """The grayscale PNG on white that goes to the model (`data` itself when it is one already
  and small); PngError says why a PNG is refused."""
  if len(data) > MAX_PNG_BYTES:
    raise PngError(f'the PNG is {len(data)} bytes; the limit is {MAX_PNG_BYTES} (a sketch '
                   'needs far less: save it smaller)')
  width, height, decoded = declared_size(data)
  if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
    raise PngError(f'the image is {width}x{height} pixels; each side must be {MIN_SIDE} to '
                   f'{MAX_SIDE}')
  if decoded > MAX_DECODED_BYTES:
    raise PngError(f'the image is {width}x{height} pixels and decodes to {decoded} bytes; the '
                   f'limit is {MAX_DECODED_BYTES} (save it smaller, or at 8 bits per sample)')
  # Small images (2 MiB decoded at most) are decoded at once: a sketch never waits behind a
  # large one. Large ones go to the decoder threads: few at a time, and always the same
  # threads, so the memory malloc keeps after them is theirs alone, not every request
  # thread's.
  if max(width, height) > REDUCED_SIDE:
    data, low, high = _decoder.submit(_decoded, data).result()
  else:
    data, low, high = _decoded(data)
  if low == high:
    raise PngError('an empty drawing (every pixel is the same); draw something')
  return data
