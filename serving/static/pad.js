// The sketch pad (serving/pad.py): draw with Pointer Events; after each stroke the drawing
// goes to POST /search as a Quick, Draw! ndjson line, and the model's top categories and the
// nearest gallery drawings are shown. Plain script, no build step, no network but the server.
'use strict';

(() => {
  // Quick, Draw!'s simplified drawings are aligned to the top left and scaled to 0..255.
  const BOX = 255;
  // Wait this long after a stroke before searching: quick successive strokes make one query.
  const SEARCH_DELAY_MS = 250;
  // The training renderer's stroke, 3 pixels on a 256-pixel side, at the canvas's size.
  const LINE_WIDTH = 3 / 256;

  const api = document.body.dataset.api || '';
  const $ = (id) => document.getElementById(id);
  const canvas = $('canvas');
  const context = canvas.getContext('2d');
  const ui = {
    model: $('model'), version: $('version'), k: $('k'), undo: $('undo'), clear: $('clear'),
    status: $('status'), error: $('error'), results: $('results'), summary: $('summary'),
    categories: $('categories'), neighbours: $('neighbours'),
  };

  // Each stroke is a list of [x, y] in units of the canvas's width, so resizing keeps it.
  const strokes = [];
  let current = null;  // The stroke under way: {pointerId, left, top, width, points}.
  let versions = new Map();  // model -> its /models rows, newest version first.
  let timer = 0;
  let frame = 0;
  let sequence = 0;  // Numbers searches: only the newest one's answer is shown.
  let inFlight = null;  // The AbortController of the running search.

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function option(value, label) {
    const node = element('option', '', label);
    node.value = value;
    return node;
  }

  const percent = (p) => (p > 0 && p < 0.0005 ? '<0.1%' : `${(100 * p).toFixed(1)}%`);

  // Drawing.

  function paint() {
    frame = 0;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    context.setTransform(width, 0, 0, width, 0, 0);
    context.clearRect(0, 0, 1, height / width);
    context.lineWidth = LINE_WIDTH;
    context.lineCap = 'round';
    context.lineJoin = 'round';
    context.strokeStyle = context.fillStyle = '#000';
    for (const points of strokes) {
      if (points.length === 1) {  // A tap leaves a dot.
        context.beginPath();
        context.arc(points[0][0], points[0][1], LINE_WIDTH / 2, 0, 2 * Math.PI);
        context.fill();
        continue;
      }
      context.beginPath();
      context.moveTo(points[0][0], points[0][1]);
      for (const [x, y] of points.slice(1)) context.lineTo(x, y);
      context.stroke();
    }
  }

  function repaint() {
    if (!frame) frame = requestAnimationFrame(paint);
  }

  function addPoint(event) {
    const x = (event.clientX - current.left) / current.width;
    const y = (event.clientY - current.top) / current.width;
    const last = current.points[current.points.length - 1];
    if (!last || last[0] !== x || last[1] !== y) current.points.push([x, y]);
  }

  canvas.addEventListener('pointerdown', (event) => {
    // One stroke at a time: a second finger or another button does not draw.
    if (current || !event.isPrimary || event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    const rect = canvas.getBoundingClientRect();
    current = {pointerId: event.pointerId, left: rect.left + canvas.clientLeft,
               top: rect.top + canvas.clientTop, width: canvas.clientWidth, points: []};
    strokes.push(current.points);
    addPoint(event);
    clearTimeout(timer);
    updateButtons();
    repaint();
  });

  canvas.addEventListener('pointermove', (event) => {
    if (!current || event.pointerId !== current.pointerId) return;
    // A fast pen or finger moves further than one event a frame: take every sample.
    const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of samples.length ? samples : [event]) addPoint(sample);
    repaint();
  });

  function endStroke(event) {
    if (!current || event.pointerId !== current.pointerId) return;
    current = null;
    changed();
  }
  canvas.addEventListener('pointerup', endStroke);
  canvas.addEventListener('pointercancel', endStroke);
  canvas.addEventListener('lostpointercapture', endStroke);

  function updateButtons() {
    ui.undo.disabled = ui.clear.disabled = strokes.length === 0;
  }

  function changed() {
    updateButtons();
    repaint();
    clearTimeout(timer);
    if (strokes.length) {
      timer = setTimeout(search, SEARCH_DELAY_MS);
    } else {
      cancelSearch();
      hideError();
      showEmpty();
    }
  }

  ui.undo.addEventListener('click', () => {
    if (current) return;
    strokes.pop();
    changed();
  });

  ui.clear.addEventListener('click', () => {
    if (current) return;
    strokes.length = 0;
    changed();
  });

  document.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === 'z'
        && strokes.length) {
      event.preventDefault();
      ui.undo.click();
    }
  });

  new ResizeObserver(repaint).observe(canvas);

  // The query: as the dataset's simplified drawings, aligned to the top left and scaled
  // uniformly so the longer side spans 0..255, in whole numbers. (The dataset also thins
  // points with Ramer-Douglas-Peucker at 2/255, which the model's 128-pixel input cannot see.)
  function queryLine() {
    let left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
    for (const points of strokes) {
      for (const [x, y] of points) {
        left = Math.min(left, x);
        top = Math.min(top, y);
        right = Math.max(right, x);
        bottom = Math.max(bottom, y);
      }
    }
    const extent = Math.max(right - left, bottom - top);
    const scale = extent > 0 ? BOX / extent : 0;
    const drawing = strokes.map((points) => {
      const xs = [], ys = [];
      for (const [x, y] of points) {
        const px = Math.min(BOX, Math.round((x - left) * scale));
        const py = Math.min(BOX, Math.round((y - top) * scale));
        if (xs.length && xs[xs.length - 1] === px && ys[ys.length - 1] === py) continue;
        xs.push(px);
        ys.push(py);
      }
      return [xs, ys];
    });
    return JSON.stringify({drawing}) + '\n';
  }

  // Searching.

  function cancelSearch() {
    sequence += 1;
    if (inFlight) inFlight.abort();
    inFlight = null;
    ui.results.removeAttribute('aria-busy');
  }

  async function search() {
    const model = ui.model.value;
    if (!model || !strokes.length) return;
    cancelSearch();
    const id = sequence;
    inFlight = new AbortController();
    const params = new URLSearchParams({model, version: ui.version.value, k: ui.k.value});
    ui.results.setAttribute('aria-busy', 'true');
    setStatus('Searching\u2026');
    try {
      const response = await fetch(`${api}/search?${params}`, {
        method: 'POST', headers: {'Content-Type': 'application/x-ndjson'}, body: queryLine(),
        signal: inFlight.signal,
      });
      const body = await response.json().catch(() => null);
      if (id !== sequence) return;
      if (!response.ok || !body || !body.queries) {
        throw new Error(body && body.error ? body.error.message
                        : `the server answered ${response.status} ${response.statusText}`);
      }
      showResults(body);
    } catch (error) {
      if (id !== sequence || error.name === 'AbortError') return;
      const reason = error instanceof TypeError
        ? `could not reach the server (${error.message})` : error.message;
      showError(`The search failed: ${reason}`);
    } finally {
      if (id === sequence) {
        inFlight = null;
        ui.results.removeAttribute('aria-busy');
      }
    }
  }

  // Showing.

  function setStatus(text) {
    ui.status.textContent = text;
  }

  function hideError() {
    ui.error.hidden = true;
    ui.error.textContent = '';
  }

  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = false;
    showEmpty();
    setStatus('');
  }

  function showEmpty() {
    ui.categories.replaceChildren();
    ui.neighbours.replaceChildren();
    ui.summary.textContent = strokes.length ? '' : 'Results appear here as you draw.';
    if (!strokes.length && ui.model.value) setStatus('Draw something to search.');
  }

  function categoryItem({category, probability}) {
    const item = element('li');
    item.dataset.category = category;
    item.dataset.probability = String(probability);
    const bar = element('span', 'bar');
    bar.setAttribute('aria-hidden', 'true');
    const fill = element('span');
    fill.style.width = `${100 * Math.min(1, Math.max(0, probability))}%`;
    bar.append(fill);
    item.append(element('span', 'name', category), element('span', 'value', percent(probability)),
                bar);
    return item;
  }

  function neighbourItem(model, version, neighbour) {
    const item = element('li');
    item.dataset.id = neighbour.id;
    item.dataset.category = neighbour.category;
    item.dataset.distance = String(neighbour.distance);
    const image = element('img');
    image.src = `${api}/pad/gallery/${encodeURIComponent(model)}/${version}/${neighbour.index}.png`;
    image.alt = `${neighbour.category} (gallery drawing ${neighbour.id})`;
    image.width = image.height = 128;
    const caption = element('figcaption');
    caption.append(element('span', 'category', neighbour.category),
                   element('span', 'distance', `distance ${neighbour.distance.toFixed(2)}`));
    const figure = element('figure');
    figure.append(image, caption);
    item.append(figure);
    return item;
  }

  function showResults(body) {
    const [result] = body.queries;
    // Older servers send only the most probable category.
    const top = result.top_categories
      || [{category: result.predicted_category, probability: result.probability}];
    hideError();
    ui.categories.replaceChildren(...top.map(categoryItem));
    ui.neighbours.replaceChildren(
      ...result.results.map((n) => neighbourItem(body.model, body.version, n)));
    ui.summary.textContent = `${body.model} version ${body.version}: the `
      + `${result.results.length} nearest of ${body.gallery_size} gallery drawings`;
    setStatus(`Most likely ${top[0].category} (${percent(top[0].probability)}).`);
  }

  // Models and versions.

  function versionOption(row) {
    // A version the registry skips (damaged, incomplete) is listed, but cannot be chosen.
    if (row.skipped) {
      const node = option(String(row.version), `${row.version} (unusable: ${row.skipped})`);
      node.disabled = true;
      return node;
    }
    return option(String(row.version), row.pushed_at
      ? `${row.version} (pushed ${row.pushed_at.slice(0, 10)})` : String(row.version));
  }

  function fillVersions() {
    const rows = versions.get(ui.model.value) || [];
    const usable = rows.find((row) => !row.skipped);
    ui.version.replaceChildren(
      option('latest', usable ? `latest (${usable.version})` : 'latest'),
      ...rows.map(versionOption));
  }

  async function loadModels() {
    try {
      const response = await fetch(`${api}/models`);
      const body = await response.json().catch(() => null);
      if (!response.ok || !body || !body.models) {
        throw new Error(body && body.error ? body.error.message
                        : `the server answered ${response.status} ${response.statusText}`);
      }
      versions = new Map();
      for (const row of body.models) {
        if (!versions.has(row.model)) versions.set(row.model, []);
        versions.get(row.model).push(row);
      }
      for (const rows of versions.values()) rows.sort((a, b) => b.version - a.version);
    } catch (error) {
      const reason = error instanceof TypeError
        ? `could not reach the server (${error.message})` : error.message;
      showError(`Could not list the models: ${reason}`);
      return;
    }
    if (!versions.size) {
      showError('The registry has no pushed models yet: run the pipeline first.');
      return;
    }
    ui.model.replaceChildren(...[...versions.keys()].map((model) => option(model, model)));
    fillVersions();
    setStatus('Draw something to search.');
    if (strokes.length) search();
  }

  ui.model.addEventListener('change', () => {
    fillVersions();
    if (strokes.length) search();
  });
  for (const picker of [ui.version, ui.k]) {
    picker.addEventListener('change', () => {
      if (strokes.length) search();
    });
  }

  updateButtons();
  showEmpty();
  repaint();
  loadModels();
})();
