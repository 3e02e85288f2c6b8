// The candidates panel's script: the extension builds the page (candidates escaped); this
// only reports which candidate's Insert button was clicked.
(function () {
  const vscode = acquireVsCodeApi();
  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button") : null;
    if (!button || button.dataset.action !== "insert") return;
    button.disabled = true;
    vscode.postMessage({ type: "insert", index: Number(button.dataset.index) });
  });
})();
