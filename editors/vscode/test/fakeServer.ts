/**
 * A real HTTP server on 127.0.0.1 that answers like `geex serve` (the routes and bodies the
 * extension uses, in the shapes src/geex/serve/ sends), recording every request. Tests choose
 * the answers; a request the test did not plan for is a 404 in the server's error shape.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: Record<string, unknown> | undefined;
  /** Whether the client closed the connection before the answer ended. */
  aborted: boolean;
}

/** A planned answer: a JSON body, an SSE stream of pieces, or an error. */
export type Answer =
  | { json: unknown; status?: number; delayMs?: number }
  | { stream: unknown[]; delayMs?: number; pieceDelayMs?: number; withoutDone?: boolean }
  | { error: string; status: number };

export type Route = (request: RecordedRequest) => Answer;

export class FakeGeexServer {
  readonly requests: RecordedRequest[] = [];
  readonly routes = new Map<string, Route>();
  apiKey: string | undefined;
  private server: Server | undefined;
  url = "";

  /** Answers `POST /v1/completions` with these texts, one choice each, after `delayMs`. */
  completions(
    texts: (body: Record<string, unknown>) => string[],
    delayMs: number | ((request: RecordedRequest) => number) = 0,
  ): this {
    this.routes.set("POST /v1/completions", (request) => ({
      delayMs: typeof delayMs === "number" ? delayMs : delayMs(request),
      json: {
        id: "cmpl-test",
        object: "text_completion",
        model: "tiny-geex",
        choices: texts(request.body ?? {}).map((text, index) => ({
          index,
          text,
          finish_reason: "stop",
          logprobs: null,
        })),
      },
    }));
    return this;
  }

  /**
   * Answers `POST /v1/tasks/{task}`: whole, or streamed in these pieces with "stream": true.
   * `withoutDone` ends the stream as a server that went away would: no finish, no `[DONE]`.
   */
  task(task: string, pieces: string[], pieceDelayMs = 0, { withoutDone = false } = {}): this {
    const usage = { prompt_tokens: 3, completion_tokens: pieces.length };
    const events = pieces.map((text): unknown => ({ text }));
    if (!withoutDone) events.push({ finish_reason: "stop", usage });
    this.routes.set(`POST /v1/tasks/${task}`, (request) =>
      request.body?.stream === true
        ? { pieceDelayMs, withoutDone, stream: events }
        : {
            json: {
              id: "task-test",
              object: "task",
              task,
              model: "tiny-geex",
              text: pieces.join(""),
              finish_reason: "stop",
              usage,
            },
          },
    );
    return this;
  }

  health(running = 0, queued = 0): this {
    this.routes.set("GET /health", () => ({
      json: { status: "ok", model: "tiny-geex", engine: { running, queued }, streams: 0 },
    }));
    return this;
  }

  async start(): Promise<this> {
    this.server = createServer((request, response) => void this.handle(request, response));
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
  }

  /** The requests to a route, e.g. "POST /v1/completions". */
  requestsTo(route: string): RecordedRequest[] {
    return this.requests.filter((r) => `${r.method} ${r.path}` === route);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const recorded: RecordedRequest = {
      method: request.method ?? "GET",
      path: (request.url ?? "/").split("?")[0] ?? "/",
      headers: request.headers,
      body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined,
      aborted: false,
    };
    this.requests.push(recorded);
    response.on("close", () => {
      if (!response.writableFinished) recorded.aborted = true;
    });
    if (this.apiKey && request.headers.authorization !== `Bearer ${this.apiKey}`) {
      send(response, 401, errorBody("invalid or missing API key"));
      return;
    }
    const route = this.routes.get(`${recorded.method} ${recorded.path}`);
    if (!route) {
      send(response, 404, errorBody(`no route ${recorded.method} ${recorded.path}`));
      return;
    }
    const answer = route(recorded);
    if ("error" in answer) {
      send(response, answer.status, errorBody(answer.error));
      return;
    }
    await sleep(answer.delayMs ?? 0);
    if (response.destroyed) return;
    if ("json" in answer) {
      send(response, answer.status ?? 200, answer.json);
      return;
    }
    response.writeHead(200, { "Content-Type": "text/event-stream" });
    for (const event of answer.stream) {
      if (closed(response)) return;
      response.write(`data: ${JSON.stringify(event)}\n\n`);
      await sleep(answer.pieceDelayMs ?? 0);
    }
    response.end(answer.withoutDone ? undefined : "data: [DONE]\n\n");
  }
}

function errorBody(message: string): unknown {
  return { error: { message, type: "invalid_request_error", param: null, code: null } };
}

function send(response: ServerResponse, status: number, body: unknown): void {
  if (response.destroyed) return;
  response.writeHead(status, { "Content-Type": "application/json" });
  response.end(JSON.stringify(body));
}

/** Whether the client has gone (a function, as the answer may end while this one waits). */
function closed(response: ServerResponse): boolean {
  return response.destroyed;
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
