"""The sketch pad: a web page where a person draws and sees what the model makes of it.

  GET /  and  GET /pad                        the page (templates/pad.html)
  GET /pad/static/<file>                      its script and style sheet (no build step, no CDN)
  GET /pad/gallery/<model>/<version>/<index>.png
                                              a gallery drawing, as pushed in gallery.npz;
                                              versions as the API takes them (a number, or
                                              "latest"), refused alike (400)

The page draws with Pointer Events (mouse, touch, pen) and, after each stroke, posts the
drawing as a Quick, Draw! ndjson line to the JSON API of `serving/http.py` (`POST /search`,
pickers from `GET /models`): the top categories and the nearest gallery drawings, whose
thumbnails come from the route above (search results carry the gallery row, `index`).

`serving/http.py` registers it on the API's app, whose error handlers answer its errors as JSON.
"""
import functools
from typing import Callable, List, Optional

import flask

from serving import registry

# Galleries of versions the server has not loaded whose PNGs are kept in memory for
# thumbnails (a 5,000-drawing gallery is ~5 MB).
GALLERY_CACHE_SIZE = 4
# A version's files never change, so neither does its thumbnail at a given row.
_IMMUTABLE = 'public, max-age=31536000, immutable'


def create_blueprint(registry_root: str, gallery_cache_size: int = GALLERY_CACHE_SIZE,
                     loaded_gallery: Callable[[str, int], Optional[List[bytes]]] = lambda m, v: None
                     ) -> flask.Blueprint:
  """The page, its static files and gallery thumbnails, for the registry at `registry_root`.

  `loaded_gallery(model, version)` gives the PNGs of a version the server already holds
  (None if it does not): its thumbnails then come from there, not from a second copy.
  """
  pad = flask.Blueprint('pad', __name__, template_folder='templates', static_folder='static',
                        static_url_path='/pad/static')

  @functools.lru_cache(maxsize=gallery_cache_size)
  def gallery_pngs(model: str, version: int) -> List[bytes]:
    return registry.load_gallery(
        registry.resolve(registry_root, model, version, need_gallery=True)).png

  @pad.get('/')
  @pad.get('/pad')
  def page():
    return flask.render_template('pad.html')

  @pad.get('/pad/gallery/<model>/<version>/<int:index>.png')
  def thumbnail(model: str, version: str, index: int):
    # The app's error handlers answer as JSON: a RegistryError, and this 404, alike. The
    # version string goes through the registry's one rule (no int converter: it takes '007').
    number = registry.resolve(registry_root, model, version, need_gallery=True).version
    pngs = loaded_gallery(model, number)
    if pngs is None:
      pngs = gallery_pngs(model, number)
    if index >= len(pngs):
      flask.abort(404, f'{model} version {number}: no gallery drawing {index}; the gallery '
                  f'has {len(pngs)} (0 to {len(pngs) - 1})')
    response = flask.Response(pngs[index], mimetype='image/png')
    # "latest" moves with each push; a numbered version never changes.
    response.headers['Cache-Control'] = (
        'no-cache' if registry.parse_version(version) == registry.LATEST else _IMMUTABLE)
    return response

  return pad
