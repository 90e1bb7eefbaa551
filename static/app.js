// Conveniences only: every page works without this script.
// Copy buttons: <button data-copy="ID"> copies the text of the element with that id.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy by hand";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2500);
    });
  }
  // The date field matters only with "On a date…": say so to assistive technology too.
  const expires = document.getElementById("expires");
  const date = document.getElementById("expires_on");
  if (expires && date) {
    const sync = () => { date.required = expires.value === "date"; date.disabled = expires.value !== "date"; };
    expires.addEventListener("change", sync);
    sync();
  }
});
