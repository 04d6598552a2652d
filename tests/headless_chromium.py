"""Headless Chromium (Debian's `chromium`) for tests, driven over the DevTools protocol.

With --remote-debugging-pipe, Chromium reads commands on fd 3 and answers on fd 4, as JSON
messages ended by a NUL byte: the standard library is enough (no WebSocket client, no
WebDriver). Input dispatched this way reaches the page as a person's does: as the pointer
events of a mouse, a pen or a finger.
"""
import base64
import json
import os
import select
import shutil
import subprocess
import time

import pytest

needs_chromium = pytest.mark.skipif(
    not shutil.which('chromium'),
    reason='Debian\'s chromium is not installed (.ci/run installs it when it can)')


class Browser:
  """One headless Chromium page, driven by DevTools protocol commands on a pipe."""

  def __init__(self, profile_dir: str):
    os.makedirs(profile_dir, exist_ok=True)
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()
    self._log_path = os.path.join(profile_dir, 'chromium.log')
    with open(self._log_path, 'wb') as log:
      # Chromium reads commands on fd 3 and replies on fd 4: the pipes come in as the shell's
      # stdin and stdout and are moved there (no preexec_fn: the test server runs a thread).
      self._process = subprocess.Popen(
          ['sh', '-c', 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2', 'sh', 'chromium',
           '--headless', '--no-sandbox', '--disable-gpu', '--remote-debugging-pipe',
           '--no-first-run', '--no-default-browser-check', f'--user-data-dir={profile_dir}',
           'about:blank'],
          stdin=commands_read, stdout=replies_write, stderr=log)
    os.close(commands_read)
    os.close(replies_write)
    self._commands = os.fdopen(commands_write, 'wb')
    self._replies = replies_read
    self._buffer = b''
    self._last_id = 0
    self._session = None
    self.events = []

  def call(self, method: str, timeout: float = 60, **params):
    self._last_id += 1
    message = {'id': self._last_id, 'method': method, 'params': params}
    if self._session:
      message['sessionId'] = self._session
    self._commands.write(json.dumps(message).encode() + b'\0')
    self._commands.flush()
    deadline = time.monotonic() + timeout
    while True:
      reply = self._read(deadline, method)
      if reply.get('id') == self._last_id:
        if 'error' in reply:
          raise RuntimeError(f'{method}: {reply["error"]}')
        return reply.get('result', {})
      if 'method' in reply:
        self.events.append(reply)

  def _read(self, deadline: float, method: str) -> dict:
    while b'\0' not in self._buffer:
      remaining = deadline - time.monotonic()
      if remaining <= 0 or not select.select([self._replies], [], [], remaining)[0]:
        raise TimeoutError(f'Chromium did not answer {method}')
      chunk = os.read(self._replies, 1 << 20)
      if not chunk:
        with open(self._log_path, errors='replace') as log:
          raise RuntimeError(f'Chromium exited during {method}: {log.read()[-2000:]}')
      self._buffer += chunk
    message, self._buffer = self._buffer.split(b'\0', 1)
    return json.loads(message)

  def open(self, url: str, width: int, height: int, mobile: bool = False) -> None:
    target = self.call('Target.createTarget', url='about:blank')['targetId']
    self._session = self.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
    self.call('Runtime.enable')
    self.call('Emulation.setDeviceMetricsOverride', width=width, height=height,
              deviceScaleFactor=1, mobile=mobile)
    self.call('Emulation.setTouchEmulationEnabled', enabled=True, maxTouchPoints=1)
    self.call('Page.navigate', url=url)

  def evaluate(self, expression: str):
    result = self.call('Runtime.evaluate', expression=expression, returnByValue=True,
                       awaitPromise=True)
    if 'exceptionDetails' in result:
      raise AssertionError(f'{expression}: {result["exceptionDetails"]}')
    return result['result'].get('value')

  def wait_for(self, expression: str, condition, what: str, timeout: float = 30):
    """Evaluates `expression` until `condition(value)` holds; returns the value."""
    deadline = time.monotonic() + timeout
    while True:
      state = self.evaluate(expression)
      if state and condition(state):
        return state
      if time.monotonic() > deadline:
        raise AssertionError(f'waited {timeout} s for {what}; the page shows {state}; '
                             f'script errors: {self.exceptions()}')
      time.sleep(0.1)

  def stroke(self, points, pointer: str = 'mouse') -> None:
    """One stroke through `points` (page coordinates) with a mouse, a pen or a finger."""
    (x0, y0), (xn, yn) = points[0], points[-1]
    if pointer == 'touch':
      self.call('Input.dispatchTouchEvent', type='touchStart', touchPoints=[{'x': x0, 'y': y0}])
      for x, y in points[1:]:
        self.call('Input.dispatchTouchEvent', type='touchMove', touchPoints=[{'x': x, 'y': y}])
      self.call('Input.dispatchTouchEvent', type='touchEnd', touchPoints=[])
      return
    button = {'button': 'left', 'pointerType': pointer}
    self.call('Input.dispatchMouseEvent', type='mousePressed', x=x0, y=y0, buttons=1,
              clickCount=1, **button)
    for x, y in points[1:]:
      self.call('Input.dispatchMouseEvent', type='mouseMoved', x=x, y=y, buttons=1, **button)
    self.call('Input.dispatchMouseEvent', type='mouseReleased', x=xn, y=yn, buttons=0,
              clickCount=1, **button)

  def click(self, selector: str) -> None:
    """A mouse click at the element's centre: it must be visible and not covered."""
    x, y = self.evaluate(f'(() => {{ const r = document.querySelector({json.dumps(selector)})'
                         '.getBoundingClientRect(); return [r.x + r.width / 2, '
                         'r.y + r.height / 2]; })()')
    for kind in ('mousePressed', 'mouseReleased'):
      self.call('Input.dispatchMouseEvent', type=kind, x=x, y=y, button='left', clickCount=1,
                buttons=1 if kind == 'mousePressed' else 0)

  def choose(self, selector: str, value: str) -> None:
    """Picks an option of a <select> as a person would: the value changes, then `change`."""
    self.evaluate(f'(() => {{ const s = document.querySelector({json.dumps(selector)}); '
                  f's.value = {json.dumps(value)}; '
                  's.dispatchEvent(new Event("change", {bubbles: true})); })()')

  def screenshot(self, path: str) -> None:
    with open(path, 'wb') as f:
      f.write(base64.b64decode(self.call('Page.captureScreenshot', format='png')['data']))

  def exceptions(self):
    return [e['params']['exceptionDetails'] for e in self.events
            if e['method'] == 'Runtime.exceptionThrown']

  def close(self) -> None:
    try:
      self._session = None
      self.call('Browser.close', timeout=10)
    except (RuntimeError, TimeoutError, OSError):
      pass
    try:
      self._process.wait(timeout=20)
    except subprocess.TimeoutExpired:
      self._process.kill()
      self._process.wait()
    self._commands.close()
    os.close(self._replies)
