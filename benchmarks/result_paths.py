"""Paths as benchmark results record them: named by what they are (WORK_DIR, PIPELINE_ROOT, the
source's last folders), never by the folders of the machine that measured."""
import os


def portable(path: str, work_dir: str = '') -> str:
  """`path` as the results show it: under WORK_DIR or PIPELINE_ROOT, not this machine's folders."""
  path = os.path.normpath(path)
  if work_dir and path.startswith(os.path.normpath(work_dir) + os.sep):
    return 'WORK_DIR' + path[len(os.path.normpath(work_dir)):]
  parts = path.split(os.sep)
  for index, part in enumerate(parts):  # <pipeline root>/<pipeline name>/<component>/...
    if part == 'QuickDrawExampleGen' or part.startswith('Trainer.'):
      return os.path.join('PIPELINE_ROOT', *parts[index:])
  return os.path.basename(path)


def shown_source(source: str) -> str:
  """A URL as given; a local folder by its last two names."""
  if '://' in source or not os.path.isabs(source):
    return source
  return '.../' + '/'.join(os.path.normpath(source).split(os.sep)[-2:])
