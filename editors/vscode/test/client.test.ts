import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GeexClient, GeexError, MAX_PREFIX_CHARS, serverSentEvents } from "../src/client";
import { FakeGeexServer } from "./fakeServer";

let server: FakeGeexServer;
let apiKey = "";

function client(): GeexClient {
  return new GeexClient(() => ({ serverUrl: server.url, apiKey, model: "" }));
}

beforeEach(async () => {
  server = await new FakeGeexServer().start();
  apiKey = "";
});
afterEach(async () => {
  await server.stop();
});

describe("GeexClient", () => {
  it("asks /v1/completions with the suffix, language, stop and n, and returns the choices", async () => {
    server.completions(() => ["a + b", "b + a"]);
    const choices = await client().complete({
      prefix: "def add(a, b):\n    return ",
      suffix: "\n",
      language: "python",
      maxTokens: 16,
      stop: ["\n"],
      n: 2,
      temperature: 0.5,
    });
    expect(choices.map((c) => c.text)).toEqual(["a + b", "b + a"]);
    const [request] = server.requestsTo("POST /v1/completions");
    expect(request?.body).toEqual({
      prompt: "def add(a, b):\n    return ",
      suffix: "\n",
      language: "python",
      max_tokens: 16,
      stop: ["\n"],
      n: 2,
      temperature: 0.5,
    });
  });

  it("sends only the text near the cursor", async () => {
    server.completions(() => [""]);
    const prefix = "x".repeat(MAX_PREFIX_CHARS) + "tail";
    await client().complete({ prefix, suffix: "", language: undefined, maxTokens: 1, stop: [] });
    const body = server.requestsTo("POST /v1/completions")[0]?.body;
    expect((body?.prompt as string).length).toBe(MAX_PREFIX_CHARS);
    expect((body?.prompt as string).endsWith("tail")).toBe(true);
  });

  it("sends the API key as a Bearer token and reports a refused key clearly", async () => {
    server.apiKey = "secret";
    server.health();
    await expect(client().health()).rejects.toThrow(/401.*geex\.apiKey/);
    apiKey = "secret";
    await expect(client().health()).resolves.toMatchObject({ model: "tiny-geex" });
  });

  it("streams a task's pieces in order and returns the finish reason", async () => {
    server.task("explain", ["It adds ", "two numbers."]);
    const pieces: string[] = [];
    const stream = client().streamTask("explain", { code: "a + b", language: "python" });
    let step = await stream.next();
    while (!step.done) {
      pieces.push(step.value);
      step = await stream.next();
    }
    expect(pieces).toEqual(["It adds ", "two numbers."]);
    expect(step.value).toBe("stop");
    expect(server.requestsTo("POST /v1/tasks/explain")[0]?.body?.stream).toBe(true);
  });

  it("fails a stream that ends before [DONE], so a cut answer never looks complete", async () => {
    server.task("explain", ["It adds "], 0, { withoutDone: true });
    const pieces: string[] = [];
    const read = (async () => {
      for await (const piece of client().streamTask("explain", { code: "a + b" })) {
        pieces.push(piece);
      }
    })();
    await expect(read).rejects.toThrow(GeexError);
    await expect(read).rejects.toThrow("the server's answer stopped before its end");
    expect(pieces).toEqual(["It adds "]);
  });

  it("turns the server's error object into a GeexError with its message", async () => {
    server.routes.set("POST /v1/tasks/translate", () => ({
      status: 400,
      error: "target: unknown language 'klingon'",
    }));
    const failure = client().task("translate", {
      code: "x",
      language: "python",
      target: "klingon",
    });
    await expect(failure).rejects.toThrow(GeexError);
    await expect(failure).rejects.toThrow(/400: target: unknown language 'klingon'/);
  });

  it("names the server address when nothing listens there", async () => {
    const url = server.url;
    await server.stop();
    const gone = new GeexClient(() => ({ serverUrl: url, apiKey: "", model: "" }));
    await expect(gone.health()).rejects.toThrow(`cannot reach the Geex server at ${url}`);
  });

  it("closes the connection when the request is aborted", async () => {
    server.completions(() => ["late"], 2000);
    const controller = new AbortController();
    const pending = client().complete(
      { prefix: "x", suffix: "", language: undefined, maxTokens: 1, stop: [] },
      controller.signal,
    );
    await expect.poll(() => server.requestsTo("POST /v1/completions").length).toBe(1);
    controller.abort();
    await expect(pending).rejects.toThrow(/abort/i);
    await expect.poll(() => server.requestsTo("POST /v1/completions")[0]?.aborted).toBe(true);
  });
});

describe("serverSentEvents", () => {
  it("joins events split across chunks, including within a multi-byte character", async () => {
    const bytes = new TextEncoder().encode('data: {"text": "é"}\n\ndata: [DONE]\n\n');
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
        controller.close();
      },
    });
    const events: string[] = [];
    for await (const event of serverSentEvents(stream)) events.push(event);
    expect(events).toEqual(['{"text": "é"}', "[DONE]"]);
  });
});
