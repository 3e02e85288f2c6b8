// The debounce on its own and the LRU cache under it. `npx vitest run test/debounce.test.ts`.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Debouncer } from "../src/debounce";
import { LruCache } from "../src/lru";
import { CancellationTokenSource } from "./vscode";

describe("Debouncer", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const token = (): CancellationTokenSource["token"] => new CancellationTokenSource().token;

  it("lets only the last of a burst through, once its wait is over", async () => {
    const debouncer = new Debouncer();
    const waits = [debouncer.wait(100, token()), debouncer.wait(100, token())];
    const last = debouncer.wait(100, token());
    expect(await Promise.all(waits)).toEqual([false, false]);
    let passed: boolean | undefined;
    void last.then((value) => (passed = value));
    await vi.advanceTimersByTimeAsync(99);
    expect(passed).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(passed).toBe(true);
  });

  it("ends the wait on cancellation, on a token already cancelled, and on cancel()", async () => {
    const debouncer = new Debouncer();
    const source = new CancellationTokenSource();
    const cancelled = debouncer.wait(100, source.token);
    source.cancel();
    expect(await cancelled).toBe(false);
    expect(await debouncer.wait(100, source.token)).toBe(false);
    const dropped = debouncer.wait(100, token());
    debouncer.cancel();
    expect(await dropped).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("LruCache", () => {
  it("forgets the least recently used entry beyond its capacity", () => {
    const cache = new LruCache<number>(2);
    cache.set("a", 1);
    cache.set("b", 2);
    expect(cache.get("a")).toBe(1); // now "b" is the oldest
    cache.set("c", 3);
    expect(cache.get("b")).toBeUndefined();
    expect([...cache.values()]).toEqual([1, 3]);
    expect(cache.size).toBe(2);
  });

  it("refuses a capacity it cannot hold", () => {
    expect(() => new LruCache(0)).toThrow(/capacity of at least 1, not 0/);
  });
});
