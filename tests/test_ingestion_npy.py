"""numpy_bitmap files read as numpy.lib.format defines them (issue 26): a header shifted by a
byte inside, or bytes after the last row, fail naming the file and what is wrong; a file
numpy writes is read row for row."""
import re

import numpy as np
import pytest

from components.example_gen import category_sampling
from domain import quickdraw_source

ROWS = np.random.default_rng(0).integers(1, 255, size=(10, 784), dtype=np.uint8)
ROWS[0, 0] = 200  # Not a newline: a header that runs into it ends with it.


def _sample(folder):
  return category_sampling.sample_category(str(folder), 'cat', 8, 2, seed=0)


def _saved(tmp_path, array=ROWS) -> bytes:
  np.save(tmp_path / 'cat.npy', array)
  return (tmp_path / 'cat.npy').read_bytes()


def test_rows_are_read_exactly_as_numpy_wrote_them(tmp_path):
  _saved(tmp_path)
  sample = _sample(tmp_path)
  assert sample.read == 10 and sample.skipped == {}
  rows = {int(drawing_id.split('/')[1]): item for drawing_id, item in sample.train + sample.test}
  assert all(rows[number] == ROWS[number - 1].tobytes() for number in rows)


def test_a_header_shifted_by_one_byte_inside_fails_naming_the_file(tmp_path):
  data = _saved(tmp_path)
  brace = data.index(b'{')
  # One byte in at the header's start, its declared length unchanged: the header's newline
  # becomes the first data byte, and every row moves by a pixel.
  (tmp_path / 'cat.npy').write_bytes(data[:brace] + b' ' + data[brace:])
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=rf'^{re.escape(str(tmp_path / "cat.npy"))}: not a .npy file \(its '
                           r'\d+-byte header does not end with the newline'):
    _sample(tmp_path)
  # One byte out: the header runs into the first pixel.
  (tmp_path / 'cat.npy').write_bytes(data[:brace + 1] + data[brace + 2:])
  with pytest.raises(quickdraw_source.QuickDrawDataError, match='does not end with the newline'):
    _sample(tmp_path)


@pytest.mark.parametrize('extra', [b'\x00', b'x' * 784, b'x' * 5000])
def test_bytes_after_the_last_row_fail_with_their_count(tmp_path, extra):
  (tmp_path / 'cat.npy').write_bytes(_saved(tmp_path) + extra)
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=rf'cat.npy: the header announces 10 rows of 784 bytes, but '
                           rf'{len(extra)} more bytes follow them'):
    _sample(tmp_path)
