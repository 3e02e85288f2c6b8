/**
 * The one HTTP client of `geex serve`: OpenAI's `/v1/completions` (with `suffix` for fill in
 * the middle, `n` for candidates), the assistant's `/v1/tasks/{task}` (whole or streamed as
 * server-sent events) and `/health`. Every call takes an AbortSignal, so that VS Code's
 * cancellation reaches the server as a closed connection, which cancels the generation there.
 */
import type { GeexSettings } from "./config";

/** The part of the settings a request needs. */
export type ServerSettings = Pick<GeexSettings, "serverUrl" | "apiKey" | "model">;

/** A failure the user should read: the server's own message where it sent one. */
export class GeexError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "GeexError";
  }
}

export interface CompletionRequest {
  prefix: string;
  /** Text after the cursor; with it the server fills in the middle. */
  suffix: string;
  /** The server's language name (languages.ts), or undefined. */
  language: string | undefined;
  maxTokens: number;
  stop: readonly string[];
  n?: number;
  temperature?: number;
}

export interface Completion {
  text: string;
  finishReason: string;
}

export interface Health {
  status: string;
  model: string;
  engine: { running: number; queued: number; [counter: string]: number };
}

export type TaskName =
  | "complete"
  | "infill"
  | "comment-to-code"
  | "translate"
  | "explain"
  | "comment"
  | "ask";

/** The task's own fields (`geex.serve.tasks`) and generation options (`TaskOptions`). */
export type TaskBody = Record<string, string | number | boolean | undefined>;

export interface TaskAnswer {
  text: string;
  finishReason: string;
}

/** The most text sent around the cursor: the server cuts it further to fit the model. */
export const MAX_PREFIX_CHARS = 24_000;
export const MAX_SUFFIX_CHARS = 8_000;

export class GeexClient {
  constructor(
    private readonly settings: () => ServerSettings,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  /** One completion per candidate (`n`), in the server's order. */
  async complete(request: CompletionRequest, signal?: AbortSignal): Promise<Completion[]> {
    const body = {
      prompt: request.prefix.slice(-MAX_PREFIX_CHARS),
      suffix: request.suffix.slice(0, MAX_SUFFIX_CHARS),
      language: request.language,
      max_tokens: request.maxTokens,
      stop: request.stop.length > 0 ? request.stop.slice(0, 16) : undefined,
      n: request.n ?? 1,
      temperature: request.temperature ?? 0,
      model: this.settings().model || undefined,
    };
    const answer = await this.json("/v1/completions", body, signal);
    const choices = (
      answer as { choices?: { index: number; text: string; finish_reason: string }[] }
    ).choices;
    if (!Array.isArray(choices)) throw new GeexError("the server's answer has no choices");
    return [...choices]
      .sort((a, b) => a.index - b.index)
      .map((choice) => ({ text: choice.text, finishReason: choice.finish_reason }));
  }

  /** A task's whole answer. */
  async task(task: TaskName, body: TaskBody, signal?: AbortSignal): Promise<TaskAnswer> {
    const answer = (await this.json(`/v1/tasks/${task}`, this.taskBody(body, false), signal)) as {
      text?: string;
      finish_reason?: string;
    };
    if (typeof answer.text !== "string") throw new GeexError("the server's answer has no text");
    return { text: answer.text, finishReason: answer.finish_reason ?? "stop" };
  }

  /** A task's answer as it is generated; the last value returned is the finish reason. */
  async *streamTask(
    task: TaskName,
    body: TaskBody,
    signal?: AbortSignal,
  ): AsyncGenerator<string, string, undefined> {
    const response = await this.send(`/v1/tasks/${task}`, this.taskBody(body, true), signal);
    if (response.body === null) throw new GeexError("the server sent no stream");
    let finishReason = "stop";
    for await (const data of serverSentEvents(response.body)) {
      if (data === "[DONE]") return finishReason;
      const event = parseJson(data) as {
        text?: string;
        finish_reason?: string;
        error?: { message?: string };
      };
      if (event.error) throw new GeexError(event.error.message ?? "the server failed");
      if (typeof event.text === "string" && event.text) yield event.text;
      if (event.finish_reason) finishReason = event.finish_reason;
    }
    // geex serve always ends with [DONE]: without it the connection broke mid-answer (the
    // server stopped, a proxy timed out), and what arrived is only the start of the answer.
    throw new GeexError(
      "the server's answer stopped before its end (the connection closed without [DONE])",
    );
  }

  async health(signal?: AbortSignal): Promise<Health> {
    const response = await this.send("/health", undefined, signal);
    return (await response.json()) as Health;
  }

  private taskBody(body: TaskBody, stream: boolean): TaskBody {
    return { ...body, stream, model: this.settings().model || undefined };
  }

  private async json(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    const response = await this.send(path, body, signal);
    return parseJson(await response.text());
  }

  /** The request, answered 2xx; anything else is a GeexError with the server's message. */
  private async send(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    const { serverUrl, apiKey } = this.settings();
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
    let response: Response;
    try {
      response = await this.fetchImpl(serverUrl + path, {
        method: body === undefined ? "GET" : "POST",
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: signal ?? null,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new GeexError(
        `cannot reach the Geex server at ${serverUrl} (${describe(error)}): start it with ` +
          "'geex serve --model MODEL' or set geex.serverUrl",
      );
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

/** The `data:` payloads of a server-sent event stream, one per event. */
export async function* serverSentEvents(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string, void, undefined> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = done ? "" : (events.pop() ?? "");
      for (const event of events) {
        const data = event
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) yield data;
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

async function errorOf(response: Response): Promise<GeexError> {
  const text = await response.text().catch(() => "");
  let message = text.trim().slice(0, 500) || response.statusText;
  try {
    const body = JSON.parse(text) as { error?: { message?: string } | string; detail?: string };
    const error = body.error;
    message = (typeof error === "string" ? error : error?.message) ?? body.detail ?? message;
  } catch {
    // not JSON: the text itself
  }
  if (response.status === 401) message += " (set geex.apiKey to the server's --api-key)";
  return new GeexError(`the Geex server answered ${response.status}: ${message}`, response.status);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new GeexError(`the Geex server sent something that is not JSON: ${text.slice(0, 200)}`);
  }
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}
