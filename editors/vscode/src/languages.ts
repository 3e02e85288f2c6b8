/**
 * VS Code's language ids as the server names them (geex.languages keys), and what the
 * extension needs to know of each: its line comment, for prompts and comment detection.
 * A language missing here is still completed, without a language tag.
 */

export interface LanguageInfo {
  /** The server's name of the language (the `language` field of a request). */
  geex: string;
  /** What the language calls itself, for menus. */
  label: string;
  lineComment: string | undefined;
}

const LANGUAGES: Record<string, LanguageInfo> = {
  python: { geex: "python", label: "Python", lineComment: "#" },
  cpp: { geex: "cpp", label: "C++", lineComment: "//" },
  c: { geex: "c", label: "C", lineComment: "//" },
  csharp: { geex: "csharp", label: "C#", lineComment: "//" },
  cuda: { geex: "cuda", label: "CUDA", lineComment: "//" },
  "cuda-cpp": { geex: "cuda", label: "CUDA", lineComment: "//" },
  java: { geex: "java", label: "Java", lineComment: "//" },
  javascript: { geex: "javascript", label: "JavaScript", lineComment: "//" },
  javascriptreact: { geex: "javascript", label: "JavaScript", lineComment: "//" },
  typescript: { geex: "typescript", label: "TypeScript", lineComment: "//" },
  typescriptreact: { geex: "typescript", label: "TypeScript", lineComment: "//" },
  go: { geex: "go", label: "Go", lineComment: "//" },
  rust: { geex: "rust", label: "Rust", lineComment: "//" },
  kotlin: { geex: "kotlin", label: "Kotlin", lineComment: "//" },
  scala: { geex: "scala", label: "Scala", lineComment: "//" },
  swift: { geex: "swift", label: "Swift", lineComment: "//" },
  dart: { geex: "dart", label: "Dart", lineComment: "//" },
  php: { geex: "php", label: "PHP", lineComment: "//" },
  "objective-c": { geex: "objective-c", label: "Objective-C", lineComment: "//" },
  "objective-cpp": { geex: "objective-cpp", label: "Objective-C++", lineComment: "//" },
  groovy: { geex: "groovy", label: "Groovy", lineComment: "//" },
  shellscript: { geex: "shell", label: "Shell", lineComment: "#" },
  ruby: { geex: "ruby", label: "Ruby", lineComment: "#" },
  perl: { geex: "perl", label: "Perl", lineComment: "#" },
  r: { geex: "r", label: "R", lineComment: "#" },
  julia: { geex: "julia", label: "Julia", lineComment: "#" },
  lua: { geex: "lua", label: "Lua", lineComment: "--" },
  haskell: { geex: "haskell", label: "Haskell", lineComment: "--" },
  sql: { geex: "sql", label: "SQL", lineComment: "--" },
  html: { geex: "html", label: "HTML", lineComment: undefined },
  css: { geex: "css", label: "CSS", lineComment: undefined },
  vue: { geex: "vue", label: "Vue", lineComment: undefined },
  markdown: { geex: "markdown", label: "Markdown", lineComment: undefined },
  latex: { geex: "tex", label: "TeX", lineComment: "%" },
  tex: { geex: "tex", label: "TeX", lineComment: "%" },
  fortran: { geex: "fortran", label: "Fortran", lineComment: "!" },
  "fortran-modern": { geex: "fortran", label: "Fortran", lineComment: "!" },
  pascal: { geex: "pascal", label: "Pascal", lineComment: "//" },
  vb: { geex: "visual-basic", label: "Visual Basic", lineComment: "'" },
  matlab: { geex: "matlab", label: "MATLAB", lineComment: "%" },
};

export function languageInfo(languageId: string): LanguageInfo | undefined {
  return LANGUAGES[languageId];
}

/** The languages a translation can target, CodeGeeX's five first, by their VS Code ids. */
export const TRANSLATION_TARGETS: readonly string[] = [
  "python",
  "cpp",
  "java",
  "javascript",
  "go",
  "rust",
  "typescript",
  "csharp",
  "c",
  "kotlin",
  "php",
  "ruby",
  "swift",
  "scala",
  "shellscript",
  "lua",
  "haskell",
  "dart",
  "r",
  "julia",
];
