/**
 * Completions already fetched, so that the same cursor context does not reach the server twice
 * (VS Code asks again on focus changes, undo, and moving back), and typing forward through a
 * suggestion keeps the rest of it without a new request.
 */
import { LruCache } from "./lru";

/** How much of the text around the cursor tells two contexts apart. */
const PREFIX_KEY_CHARS = 2_000;
const SUFFIX_KEY_CHARS = 500;

interface Entry {
  language: string;
  prefixTail: string;
  suffixHead: string;
  /** The completion as shown (already cut); "" for "nothing to show". */
  text: string;
}

export class CompletionCache {
  private readonly entries: LruCache<Entry>;

  constructor(capacity = 64) {
    this.entries = new LruCache(capacity);
  }

  set(language: string, prefix: string, suffix: string, text: string): void {
    const entry = {
      language,
      prefixTail: prefix.slice(-PREFIX_KEY_CHARS),
      suffixHead: suffix.slice(0, SUFFIX_KEY_CHARS),
      text,
    };
    this.entries.set(keyOf(entry), entry);
  }

  /**
   * The completion for this context: a cached one for the same context, or the rest of a
   * cached one whose first characters the user has typed since.
   */
  get(language: string, prefix: string, suffix: string): string | undefined {
    const prefixTail = prefix.slice(-PREFIX_KEY_CHARS);
    const suffixHead = suffix.slice(0, SUFFIX_KEY_CHARS);
    const exact = this.entries.get(keyOf({ language, prefixTail, suffixHead }));
    if (exact) return exact.text;
    const last = prefix.at(-1);
    for (const entry of [...this.entries.values()].reverse()) {
      if (entry.language !== language || entry.suffixHead !== suffixHead) continue;
      for (let typed = 1; typed < entry.text.length; typed++) {
        // A cheap test first: the last character typed must be this one of the suggestion.
        if (entry.text[typed - 1] !== last) continue;
        if (prefix.endsWith(entry.prefixTail + entry.text.slice(0, typed))) {
          return entry.text.slice(typed);
        }
      }
    }
    return undefined;
  }

  clear(): void {
    this.entries.clear();
  }
}

function keyOf(entry: Omit<Entry, "text">): string {
  return `${entry.language}\u0000${entry.prefixTail}\u0000${entry.suffixHead}`;
}
