// The Ask panel's script. The extension holds the conversation and sends it as HTML it has
// rendered with every piece of question, context and answer escaped (src/ask.ts,
// src/markdown.ts), so placing that HTML here cannot run model text. This script sends the
// user's questions and clicks back.
(function () {
  const vscode = acquireVsCodeApi();
  const conversation = document.getElementById("conversation");
  const hint = document.getElementById("hint");
  const context = document.getElementById("context");
  const form = document.getElementById("ask-form");
  const question = document.getElementById("question");
  const send = document.getElementById("send");
  const stop = document.getElementById("stop");

  /** Whether the view is at (or near) its end, so new text should keep it there. */
  function atEnd() {
    const page = document.scrollingElement;
    return page.scrollHeight - page.scrollTop - page.clientHeight < 40;
  }

  function showTurn(id, html) {
    const follow = atEnd();
    let turn = document.getElementById("turn-" + id);
    if (!turn) {
      turn = document.createElement("article");
      turn.id = "turn-" + id;
      turn.className = "turn";
      conversation.appendChild(turn);
      if (hint) hint.hidden = true;
    }
    turn.innerHTML = html;
    if (follow) window.scrollTo(0, document.scrollingElement.scrollHeight);
  }

  window.addEventListener("message", (event) => {
    const message = event.data;
    if (message.type === "turn") showTurn(message.id, message.html);
    else if (message.type === "context") context.innerHTML = message.html;
    else if (message.type === "busy") {
      send.disabled = message.busy;
      stop.hidden = !message.busy;
    }
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text || send.disabled) return;
    vscode.postMessage({ type: "ask", question: text });
    question.value = "";
  });

  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stop.addEventListener("click", () => vscode.postMessage({ type: "stop" }));

  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button") : null;
    const action = button && button.dataset.action;
    if (action === "dropContext") vscode.postMessage({ type: "dropContext" });
    if (action !== "insert" && action !== "copy") return;
    const turn = Number(button.dataset.turn);
    const block = Number(button.dataset.block);
    vscode.postMessage({ type: action, turn, block });
    if (action === "copy") {
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    }
  });

  question.focus();
  vscode.postMessage({ type: "ready" });
})();
