"""The upload limit and the JSON error body, shared by the app (http.py) and the server in front
of it (server.py), so both answer the same errors the same way."""
import json

# A sketch PNG is a few KB; a request's budget of ndjson drawings stays well under.
MAX_UPLOAD_BYTES = 4 * 1024 * 1024


def too_large_message(limit: int) -> str:
  return f'the upload is over the limit of {limit} bytes'


def error_body(status: int, message: str) -> bytes:
  """The JSON body of every error the server answers, from waitress or from the app."""
  return json.dumps({'error': {'status': status, 'message': message}}).encode('utf-8')
