// The server's API as the playground uses it: the API key, the server's errors as messages,
// and the tasks streamed as server-sent events, read from the response body as they arrive.

const KEY_STORE = "geex.apiKey";

export function savedKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORE, key);
  else localStorage.removeItem(KEY_STORE);
}

/** A refusal or failure the server reported; `status` is its HTTP status (401: the key). */
export class ServerError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ServerError";
    this.status = status;
  }
}

function headers() {
  const sent = { "Content-Type": "application/json" };
  const key = savedKey();
  if (key) sent.Authorization = `Bearer ${key}`;
  return sent;
}

async function errorOf(response) {
  // geex serve answers OpenAI's error object; a proxy in between may answer anything.
  let message = `the server answered ${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON: the status line says what there is to say
  }
  return new ServerError(message, response.status);
}

/** `/health`: the model's name and the engine's counts (open without a key). */
export async function health(signal) {
  const response = await fetch("/health", { signal });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** Resolves when the key (or no key) is accepted; a ServerError with status 401 when not. */
export async function checkKey() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) throw await errorOf(response);
}

/** The data of one server-sent event: its `data:` lines joined, one leading space dropped. */
function eventData(event) {
  return event
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).replace(/^ /, ""))
    .join("\n");
}

/**
 * POST /v1/tasks/{task} with "stream": true, yielding each event's message as it arrives:
 * {text} pieces, then {finish_reason, usage}. An error event, or a stream cut before its
 * [DONE], throws a ServerError; aborting `signal` throws the fetch's AbortError.
 */
export async function* streamTask(task, body, signal) {
  const response = await fetch(`/v1/tasks/${encodeURIComponent(task)}`, {
    method: "POST",
    headers: headers(),
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // On the whole buffer: a "\r\n" may arrive cut in two.
    buffer = (buffer + value).replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = eventData(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (data === "") continue;
      if (data === "[DONE]") return;
      const message = JSON.parse(data);
      if (message.error) throw new ServerError(message.error.message, response.status);
      yield message;
    }
  }
  throw new ServerError("the answer ended before its end mark: the server stopped streaming");
}
