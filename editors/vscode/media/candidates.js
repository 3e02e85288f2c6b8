// The candidates panel's script: the extension builds the page (candidates escaped); this
// reports which candidate's Insert button was clicked, and enables the button again when the
// extension refused the insert (the document changed meanwhile), so it can be clicked again.
(function () {
  const vscode = acquireVsCodeApi();
  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button") : null;
    if (!button || button.dataset.action !== "insert") return;
    button.disabled = true;
    vscode.postMessage({ type: "insert", index: Number(button.dataset.index) });
  });
  window.addEventListener("message", (event) => {
    const message = event.data;
    if (!message || message.type !== "refused" || !Number.isInteger(message.index)) return;
    const button = document.querySelector(
      `button[data-action="insert"][data-index="${message.index}"]`,
    );
    if (button) button.disabled = false;
  });
})();
