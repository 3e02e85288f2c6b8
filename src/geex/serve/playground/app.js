// The playground page: its tabs, the API key, the server's health in the header, and each
// task's form, whose answer is shown piece by piece as the server streams it.

import { checkKey, health, saveKey, savedKey, streamTask } from "./api.js";

const HEALTH_EVERY_MS = 2000;
const NUMBER_FIELDS = new Set(["max_tokens", "temperature"]);

const byId = (id) => document.getElementById(id);

function showTab(chosen) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab === chosen;
    tab.setAttribute("aria-selected", String(selected));
    byId(tab.getAttribute("aria-controls")).hidden = !selected;
  }
}

async function fillLanguages() {
  // From the server's own registry, so the choices are the names the tasks accept.
  const response = await fetch("/playground/languages.json");
  const languages = await response.json();
  for (const select of document.querySelectorAll("select[data-languages]")) {
    for (const { key, name } of languages) select.append(new Option(name, key));
    select.value = select.dataset.default;
  }
}

async function watchHealth() {
  const shown = byId("health");
  try {
    const answer = await health();
    byId("model").textContent = answer.model;
    const { running, queued } = answer.engine;
    shown.textContent = `${running} running · ${queued} queued`;
    shown.dataset.state = running || queued ? "busy" : "idle";
  } catch (err) {
    shown.textContent = `unreachable (${err.message})`;
    shown.dataset.state = "down";
  }
  setTimeout(watchHealth, HEALTH_EVERY_MS);
}

function askForKey(message) {
  byId("key-panel").hidden = false;
  byId("key-message").textContent = `This server asks for an API key. It said: ${message}`;
  byId("api-key").focus();
}

/** Asks the server whether the saved key (or none) opens it; asks the user when not. */
async function verifyKey() {
  try {
    await checkKey();
    byId("key-panel").hidden = true;
    byId("key-message").textContent = "";
  } catch (err) {
    if (err.status === 401) askForKey(err.message);
    // Anything else (the server down) shows in the header's health line.
  }
}

function wireKeyPanel() {
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveKey(byId("api-key").value.trim());
    verifyKey();
  });
  byId("forget-key").addEventListener("click", () => {
    saveKey("");
    byId("api-key").value = "";
    verifyKey();
  });
  byId("show-key").addEventListener("click", () => {
    const panel = byId("key-panel");
    panel.hidden = !panel.hidden;
    byId("api-key").value = savedKey();
  });
}

/** One task's answer on the page; its data-state and data-pieces say how far it has come. */
class Answer {
  constructor(element) {
    this.element = element;
    this.status = element.querySelector(".status");
    this.text = element.querySelector("mark") || element.querySelector("pre");
    this.context = element.querySelectorAll(".context");
    this.pieces = 0;
  }

  set state(state) {
    this.element.dataset.state = state;
  }

  start(body) {
    this.pieces = 0;
    this.element.dataset.pieces = "0";
    this.state = "streaming";
    this.text.textContent = "";
    if (this.context.length === 2) {
      this.context[0].textContent = body.prefix;
      this.context[1].textContent = body.suffix || "";
    }
    this.say("streaming…");
  }

  append(text) {
    this.text.append(text); // a text node: the model's output is never parsed as HTML
    this.pieces += 1;
    this.element.dataset.pieces = String(this.pieces);
  }

  finish({ finish_reason: reason, usage }) {
    this.state = "done";
    const empty = this.pieces === 0 ? " · the answer is empty" : "";
    const more = reason === "length" ? " (raise max tokens for more)" : "";
    this.say(`${reason}${more} · ${usage.completion_tokens} tokens${empty}`);
  }

  stopped() {
    this.state = "stopped";
    this.say("stopped");
  }

  fail(message) {
    this.state = "error";
    this.say(message, true);
  }

  say(message, isError = false) {
    this.status.textContent = message;
    this.status.classList.toggle("error", isError);
  }
}

function bodyOf(form) {
  const body = {};
  for (const [name, value] of new FormData(form)) {
    if (!NUMBER_FIELDS.has(name)) body[name] = value;
    else if (value !== "") body[name] = Number(value);
  }
  return body;
}

function wireTask(form) {
  const answer = new Answer(form.nextElementSibling);
  const stop = form.querySelector(".stop");
  let running = null; // the AbortController of the request being shown

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    running?.abort();
    const mine = new AbortController();
    running = mine;
    const body = bodyOf(form);
    let task = form.dataset.task;
    if (task === "infill" && body.suffix === "") {
      task = "complete"; // nothing after the cursor: a plain continuation
      delete body.suffix;
    }
    answer.start(body);
    stop.disabled = false;
    try {
      for await (const message of streamTask(task, body, mine.signal)) {
        if ("text" in message) answer.append(message.text);
        else if ("finish_reason" in message) answer.finish(message);
      }
    } catch (err) {
      if (running !== mine) return; // a newer request owns the answer now
      if (err.name === "AbortError") answer.stopped();
      else if (err instanceof TypeError) answer.fail(`cannot reach the server: ${err.message}`);
      else answer.fail(err.message);
      if (err.status === 401) askForKey(err.message);
    } finally {
      if (running === mine) {
        running = null;
        stop.disabled = true;
      }
    }
  });
  stop.addEventListener("click", () => running?.abort());
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
}

for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => showTab(tab));
}
wireKeyPanel();
for (const form of document.querySelectorAll("form[data-task]")) wireTask(form);
fillLanguages().catch((err) => {
  byId("health").textContent = `cannot load the language list (${err.message})`;
});
watchHealth();
verifyKey();
