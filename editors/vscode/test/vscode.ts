/**
 * A working stand-in for the parts of the `vscode` API the extension uses, for unit tests in
 * Node (vitest aliases `vscode` to this file). Documents, positions and edits behave as VS Code's
 * do; windows, panels and messages are recorded in `testState` for tests to read and drive.
 * Helpers for tests are exported under names VS Code does not have (`testState`, `resetVscode`,
 * `openEditor`, `setConfiguration`).
 */

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
  isBefore(other: Position): boolean {
    return this.line < other.line || (this.line === other.line && this.character < other.character);
  }
  isEqual(other: Position): boolean {
    return this.line === other.line && this.character === other.character;
  }
  translate(lineDelta = 0, characterDelta = 0): Position {
    return new Position(this.line + lineDelta, this.character + characterDelta);
  }
  with(line?: number, character?: number): Position {
    return new Position(line ?? this.line, character ?? this.character);
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(start: Position, end: Position);
  constructor(startLine: number, startCharacter: number, endLine: number, endCharacter: number);
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    const [start, end] =
      typeof a === "number"
        ? [new Position(a, b as number), new Position(c ?? 0, d ?? 0)]
        : [a, b as Position];
    [this.start, this.end] = end.isBefore(start) ? [end, start] : [start, end];
  }
  get isEmpty(): boolean {
    return this.start.isEqual(this.end);
  }
}

export class Selection extends Range {
  constructor(
    readonly anchor: Position,
    readonly active: Position,
  ) {
    super(anchor, active);
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly path: string,
  ) {}
  static file(path: string): Uri {
    return new Uri("file", path);
  }
  static joinPath(base: Uri, ...segments: string[]): Uri {
    return new Uri(base.scheme, [base.path.replace(/\/+$/, ""), ...segments].join("/"));
  }
  static parse(value: string): Uri {
    const colon = value.indexOf(":");
    return new Uri(value.slice(0, colon), value.slice(colon + 1).replace(/^\/\//, ""));
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return `${this.scheme}://${this.path}`;
  }
}

export class TextLine {
  constructor(
    readonly lineNumber: number,
    readonly text: string,
  ) {}
  get range(): Range {
    return new Range(this.lineNumber, 0, this.lineNumber, this.text.length);
  }
  get isEmptyOrWhitespace(): boolean {
    return this.text.trim() === "";
  }
  get firstNonWhitespaceCharacterIndex(): number {
    return this.text.length - this.text.trimStart().length;
  }
}

let untitledCount = 0;
/** Every document made, by URI: what workspace.applyEdit finds its documents in. */
const documentsByUri = new Map<string, TextDocument>();

/** A text document: its text changes only through edits, as in VS Code. */
export class TextDocument {
  version = 1;
  isClosed = false;
  constructor(
    private text: string,
    readonly languageId: string,
    readonly uri: Uri = Uri.parse(`untitled:Untitled-${++untitledCount}`),
  ) {
    documentsByUri.set(uri.toString(), this);
  }
  get fileName(): string {
    return this.uri.fsPath;
  }
  get isUntitled(): boolean {
    return this.uri.scheme === "untitled";
  }
  get lineCount(): number {
    return this.lines().length;
  }
  getText(range?: Range): string {
    if (!range) return this.text;
    return this.text.slice(this.offsetAt(range.start), this.offsetAt(range.end));
  }
  lineAt(lineOrPosition: number | Position): TextLine {
    const line = typeof lineOrPosition === "number" ? lineOrPosition : lineOrPosition.line;
    const text = this.lines()[line];
    if (text === undefined) throw new Error(`Illegal value for line: ${line}`);
    return new TextLine(line, text);
  }
  offsetAt(position: Position): number {
    const lines = this.lines();
    let offset = 0;
    for (let line = 0; line < Math.min(position.line, lines.length); line++) {
      offset += (lines[line] ?? "").length + 1;
    }
    const current = lines[Math.min(position.line, lines.length - 1)] ?? "";
    return Math.min(offset + Math.min(position.character, current.length), this.text.length);
  }
  positionAt(offset: number): Position {
    const before = this.text.slice(0, Math.max(0, Math.min(offset, this.text.length)));
    const lines = before.split("\n");
    return new Position(lines.length - 1, (lines[lines.length - 1] ?? "").length);
  }
  /** Test helper: replace a range, as an edit would. */
  replace(range: Range, text: string): void {
    const start = this.offsetAt(range.start);
    this.text = this.text.slice(0, start) + text + this.text.slice(this.offsetAt(range.end));
    this.version++;
  }
  private lines(): string[] {
    return this.text.split("\n");
  }
}

export class TextEditorEdit {
  constructor(private readonly document: TextDocument) {}
  private readonly edits: [Range, string][] = [];
  replace(location: Range | Position, text: string): void {
    this.edits.push([
      location instanceof Position ? new Range(location, location) : location,
      text,
    ]);
  }
  insert(position: Position, text: string): void {
    this.edits.push([new Range(position, position), text]);
  }
  delete(range: Range): void {
    this.edits.push([range, ""]);
  }
  /** Applies the edits from the end of the document backwards, so offsets stay valid. */
  apply(): void {
    const ordered = [...this.edits].sort(
      (a, b) => this.document.offsetAt(b[0].start) - this.document.offsetAt(a[0].start),
    );
    for (const [range, text] of ordered) this.document.replace(range, text);
  }
}

/** Edits to documents by URI, applied by workspace.applyEdit (each document's as one edit). */
export class WorkspaceEdit {
  readonly edits: { uri: Uri; range: Range; text: string }[] = [];
  insert(uri: Uri, position: Position, text: string): void {
    this.edits.push({ uri, range: new Range(position, position), text });
  }
  replace(uri: Uri, range: Range, text: string): void {
    this.edits.push({ uri, range, text });
  }
  delete(uri: Uri, range: Range): void {
    this.edits.push({ uri, range, text: "" });
  }
}

export class TextEditor {
  selections: Selection[];
  constructor(
    readonly document: TextDocument,
    selection: Selection = new Selection(new Position(0, 0), new Position(0, 0)),
    readonly viewColumn: ViewColumn = ViewColumn.One,
  ) {
    this.selections = [selection];
  }
  get selection(): Selection {
    return this.selections[0] as Selection;
  }
  set selection(value: Selection) {
    this.selections = [value];
  }
  edit(callback: (edit: TextEditorEdit) => void): Promise<boolean> {
    const builder = new TextEditorEdit(this.document);
    callback(builder);
    builder.apply();
    return Promise.resolve(true);
  }
  insertSnippet(snippet: SnippetString, location?: Position | Range): Promise<boolean> {
    const where = location ?? this.selection;
    const range = where instanceof Position ? new Range(where, where) : where;
    this.document.replace(range, snippet.value);
    return Promise.resolve(true);
  }
}

export class SnippetString {
  constructor(readonly value = "") {}
}

export class Disposable {
  constructor(private readonly onDispose: () => void = () => undefined) {}
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => {
      items.forEach((item) => item.dispose());
    });
  }
  dispose(): void {
    this.onDispose();
  }
}

export class EventEmitter<T> {
  private listeners: ((value: T) => void)[] = [];
  readonly event = (listener: (value: T) => void): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    });
  };
  fire(value: T): void {
    for (const listener of [...this.listeners]) listener(value);
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class CancellationTokenSource {
  private readonly emitter = new EventEmitter<void>();
  readonly token = {
    isCancellationRequested: false,
    onCancellationRequested: this.emitter.event,
  };
  cancel(): void {
    if (this.token.isCancellationRequested) return;
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
  dispose(): void {
    this.emitter.dispose();
  }
}
export type CancellationToken = CancellationTokenSource["token"];

export enum ViewColumn {
  Active = -1,
  Beside = -2,
  One = 1,
  Two = 2,
  Three = 3,
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export enum InlineCompletionTriggerKind {
  Invoke = 0,
  Automatic = 1,
}

export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}

export enum ConfigurationTarget {
  Global = 1,
  Workspace = 2,
  WorkspaceFolder = 3,
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class MarkdownString {
  constructor(
    public value = "",
    public supportThemeIcons = false,
  ) {}
  appendMarkdown(value: string): this {
    this.value += value;
    return this;
  }
}

export class InlineCompletionItem {
  constructor(
    public insertText: string | SnippetString,
    public range?: Range,
    public command?: { command: string; title: string; arguments?: unknown[] },
  ) {}
}

export class InlineCompletionList {
  constructor(public items: InlineCompletionItem[]) {}
}

export interface StatusBarItem {
  text: string;
  tooltip: string | MarkdownString | undefined;
  command: string | undefined;
  backgroundColor: ThemeColor | undefined;
  visible: boolean;
  show(): void;
  hide(): void;
  dispose(): void;
}

/** A webview panel: `html` is recorded, messages go both ways through `post`/`receive`. */
export class WebviewPanel {
  readonly sent: unknown[] = [];
  private readonly received = new EventEmitter<unknown>();
  private readonly disposed = new EventEmitter<void>();
  visible = true;
  isDisposed = false;
  readonly webview = {
    html: "",
    options: {} as Record<string, unknown>,
    cspSource: "vscode-webview://test",
    postMessage: (message: unknown): Promise<boolean> => {
      this.sent.push(message);
      return Promise.resolve(!this.isDisposed);
    },
    onDidReceiveMessage: this.received.event,
    asWebviewUri: (uri: Uri): Uri => uri,
  };
  constructor(
    readonly viewType: string,
    public title: string,
    readonly viewColumn: ViewColumn,
    readonly options: Record<string, unknown> = {},
  ) {}
  readonly onDidDispose = this.disposed.event;
  reveal(): void {
    this.visible = true;
  }
  dispose(): void {
    if (this.isDisposed) return;
    this.isDisposed = true;
    this.disposed.fire();
  }
  /** Test helper: a message from the webview's script. */
  receive(message: unknown): void {
    this.received.fire(message);
  }
}

/** An output channel: its lines are recorded. */
export class OutputChannel {
  readonly lines: string[] = [];
  shown = false;
  constructor(readonly name: string) {}
  append(value: string): void {
    const last = this.lines.pop() ?? "";
    this.lines.push(last + value);
  }
  appendLine(value: string): void {
    this.append(value);
    this.lines.push("");
  }
  show(): void {
    this.shown = true;
  }
  hide(): void {
    this.shown = false;
  }
  clear(): void {
    this.lines.length = 0;
  }
  dispose(): void {
    this.shown = false;
  }
}

interface Message {
  kind: "information" | "warning" | "error";
  text: string;
  items: string[];
}

/** What the extension did, for tests to read, and how the user answers, for tests to set. */
export const testState = {
  /** User settings (settings.json in the user's profile), by full name. */
  configuration: {} as Record<string, unknown>,
  /** The workspace's settings (.vscode/settings.json), which override the user's. */
  workspaceConfiguration: {} as Record<string, unknown>,
  /** Each withProgress call: its options, and the source that cancels it as its Cancel button. */
  progress: [] as { options: unknown; cancellation: CancellationTokenSource }[],
  commands: new Map<string, (...args: unknown[]) => unknown>(),
  inlineProviders: [] as { selector: unknown; provider: unknown }[],
  statusBarItems: [] as StatusBarItem[],
  panels: [] as WebviewPanel[],
  messages: [] as Message[],
  shownDocuments: [] as { document: TextDocument; column: ViewColumn | undefined }[],
  clipboard: "",
  /** The answer of the next showQuickPick / showInputBox (undefined: the user pressed Escape). */
  quickPickAnswers: [] as (string | undefined)[],
  inputBoxAnswers: [] as (string | undefined)[],
  /** The button the user clicks on the next message that offers some. */
  messageAnswers: [] as (string | undefined)[],
  quickPickItems: [] as unknown[][],
  outputChannels: [] as OutputChannel[],
};

export function resetVscode(): void {
  testState.configuration = {};
  testState.workspaceConfiguration = {};
  testState.progress = [];
  testState.commands.clear();
  testState.inlineProviders = [];
  testState.statusBarItems = [];
  testState.panels = [];
  testState.messages = [];
  testState.shownDocuments = [];
  testState.clipboard = "";
  testState.quickPickAnswers = [];
  testState.inputBoxAnswers = [];
  testState.messageAnswers = [];
  testState.quickPickItems = [];
  testState.outputChannels = [];
  window.activeTextEditor = undefined;
}

/** Test helper: user settings as `geex.serverUrl` etc. */
export function setConfiguration(values: Record<string, unknown>): void {
  Object.assign(testState.configuration, values);
}

/** Test helper: settings a workspace's .vscode/settings.json sets. */
export function setWorkspaceConfiguration(values: Record<string, unknown>): void {
  Object.assign(testState.workspaceConfiguration, values);
}

/** Test helper: a document open in the active editor, with the selection given. */
export function openEditor(
  text: string,
  languageId: string,
  selection?: Selection,
  path = `/work/example.${languageId}`,
): TextEditor {
  const editor = new TextEditor(new TextDocument(text, languageId, Uri.file(path)), selection);
  window.activeTextEditor = editor;
  return editor;
}

/** Test helper: focus moves to this editor, or away from every editor (to a panel). */
export function setActiveEditor(editor: TextEditor | undefined): void {
  window.activeTextEditor = editor;
  activeEditorChanged.fire(editor);
}

function message(kind: Message["kind"]) {
  return (text: string, ...items: unknown[]): Promise<string | undefined> => {
    const labels = items.filter((item): item is string => typeof item === "string");
    testState.messages.push({ kind, text, items: labels });
    return Promise.resolve(labels.length > 0 ? testState.messageAnswers.shift() : undefined);
  };
}

const activeEditorChanged = new EventEmitter<TextEditor | undefined>();

export const window = {
  activeTextEditor: undefined as TextEditor | undefined,
  /** Fired by tests that move the focus (VS Code fires it as the user does). */
  onDidChangeActiveTextEditor: activeEditorChanged.event,
  showInformationMessage: message("information"),
  showWarningMessage: message("warning"),
  showErrorMessage: message("error"),
  showQuickPick(items: readonly unknown[] | Promise<readonly unknown[]>): Promise<unknown> {
    return Promise.resolve(items).then((list) => {
      testState.quickPickItems.push([...list]);
      const answer = testState.quickPickAnswers.shift();
      if (answer === undefined) return undefined;
      return list.find(
        (item) => item === answer || (item as { label?: string } | null)?.label === answer,
      );
    });
  },
  showInputBox(): Promise<string | undefined> {
    return Promise.resolve(testState.inputBoxAnswers.shift());
  },
  createStatusBarItem(): StatusBarItem {
    const item: StatusBarItem = {
      text: "",
      tooltip: undefined,
      command: undefined,
      backgroundColor: undefined,
      visible: false,
      show() {
        item.visible = true;
      },
      hide() {
        item.visible = false;
      },
      dispose() {
        item.visible = false;
      },
    };
    testState.statusBarItems.push(item);
    return item;
  },
  createOutputChannel(name: string): OutputChannel {
    const channel = new OutputChannel(name);
    testState.outputChannels.push(channel);
    return channel;
  },
  createWebviewPanel(
    viewType: string,
    title: string,
    column: ViewColumn | { viewColumn: ViewColumn },
    options?: Record<string, unknown>,
  ): WebviewPanel {
    const viewColumn = typeof column === "object" ? column.viewColumn : column;
    const panel = new WebviewPanel(viewType, title, viewColumn, options);
    testState.panels.push(panel);
    return panel;
  },
  showTextDocument(
    document: TextDocument,
    options?: ViewColumn | { viewColumn?: ViewColumn; preview?: boolean },
  ): Promise<TextEditor> {
    const column = typeof options === "object" ? options.viewColumn : options;
    testState.shownDocuments.push({ document, column });
    const editor = new TextEditor(document, undefined, column ?? ViewColumn.One);
    return Promise.resolve(editor);
  },
  withProgress<T>(
    options: unknown,
    task: (progress: { report(value: unknown): void }, token: CancellationToken) => Promise<T>,
  ): Promise<T> {
    const source = new CancellationTokenSource();
    testState.progress.push({ options, cancellation: source });
    return task({ report: () => undefined }, source.token);
  },
};

export const workspace = {
  getConfiguration(section?: string) {
    const prefix = section ? `${section}.` : "";
    return {
      get<T>(key: string, fallback?: T): T | undefined {
        const name = prefix + key;
        const value = testState.workspaceConfiguration[name] ?? testState.configuration[name];
        return (value === undefined ? fallback : value) as T | undefined;
      },
      /** Each level's value; the stand-in has no defaults from package.json. */
      inspect<T>(key: string) {
        const name = prefix + key;
        return {
          key: name,
          defaultValue: undefined as T | undefined,
          globalValue: testState.configuration[name] as T | undefined,
          workspaceValue: testState.workspaceConfiguration[name] as T | undefined,
          workspaceFolderValue: undefined as T | undefined,
        };
      },
      update(key: string, value: unknown): Promise<void> {
        testState.configuration[prefix + key] = value;
        configurationChanged.fire({
          affectsConfiguration: (name: string) => (prefix + key).startsWith(name),
        });
        return Promise.resolve();
      },
    };
  },
  openTextDocument(options?: { content?: string; language?: string }): Promise<TextDocument> {
    return Promise.resolve(
      new TextDocument(options?.content ?? "", options?.language ?? "plaintext"),
    );
  },
  /** Applies every edit, or none if a document is closed or unknown, as VS Code does. */
  applyEdit(edit: WorkspaceEdit): Promise<boolean> {
    const documents = edit.edits.map(({ uri }) => documentsByUri.get(uri.toString()));
    if (documents.some((document) => !document || document.isClosed)) {
      return Promise.resolve(false);
    }
    const builders = new Map<TextDocument, TextEditorEdit>();
    edit.edits.forEach(({ range, text }, index) => {
      const document = documents[index] as TextDocument;
      const builder = builders.get(document) ?? new TextEditorEdit(document);
      builders.set(document, builder);
      builder.replace(range, text);
    });
    for (const builder of builders.values()) builder.apply();
    return Promise.resolve(true);
  },
  onDidCloseTextDocument: (listener: (document: TextDocument) => void) =>
    documentClosed.event(listener),
  onDidChangeConfiguration: (
    listener: (event: { affectsConfiguration(name: string): boolean }) => void,
  ) => configurationChanged.event(listener),
};

const documentClosed = new EventEmitter<TextDocument>();

/** Test helper: the user closes a document (its last editor). */
export function closeDocument(document: TextDocument): void {
  document.isClosed = true;
  documentClosed.fire(document);
}

const configurationChanged = new EventEmitter<{ affectsConfiguration(name: string): boolean }>();

export const commands = {
  registerCommand(name: string, callback: (...args: unknown[]) => unknown): Disposable {
    testState.commands.set(name, callback);
    return new Disposable(() => testState.commands.delete(name));
  },
  executeCommand(name: string, ...args: unknown[]): Promise<unknown> {
    const command = testState.commands.get(name);
    if (!command) return Promise.resolve(undefined); // VS Code's own commands do nothing here
    return Promise.resolve(command(...args));
  },
};

export const languages = {
  registerInlineCompletionItemProvider(selector: unknown, provider: unknown): Disposable {
    const entry = { selector, provider };
    testState.inlineProviders.push(entry);
    return new Disposable(() => {
      testState.inlineProviders = testState.inlineProviders.filter((e) => e !== entry);
    });
  },
};

export const env = {
  clipboard: {
    writeText(text: string): Promise<void> {
      testState.clipboard = text;
      return Promise.resolve();
    },
    readText(): Promise<string> {
      return Promise.resolve(testState.clipboard);
    },
  },
  language: "en",
};

/** An ExtensionContext with what the extension uses. */
export function extensionContext(): { subscriptions: { dispose(): unknown }[]; extensionUri: Uri } {
  return { subscriptions: [], extensionUri: Uri.file("/extension") };
}
