// Store staff's phone pages: one-tap copy and the full-screen QR code. No build step.
(function () {
  "use strict";

  // The text to copy: data-copy="..." itself, or data-copy="#id" naming the element
  // whose text is copied (a long rendered message is not duplicated into an attribute).
  function textFor(button) {
    var value = button.getAttribute("data-copy") || "";
    if (value.charAt(0) === "#") {
      var source = document.getElementById(value.slice(1));
      return source ? source.innerText : "";
    }
    return value;
  }

  // WeCom's webview and plain http pages have no navigator.clipboard; a selected
  // off-screen textarea and execCommand still work there.
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.top = "0";
    area.style.left = "-9999px";
    area.style.fontSize = "16px"; // no iOS zoom
    document.body.appendChild(area);
    area.select();
    area.setSelectionRange(0, text.length);
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (error) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok;
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(
        function () { return true; },
        function () { return fallbackCopy(text); }
      );
    }
    return Promise.resolve(fallbackCopy(text));
  }

  function showCopied(button, ok) {
    if (!button.hasAttribute("data-label")) {
      button.setAttribute("data-label", button.textContent);
    }
    button.textContent = ok
      ? button.getAttribute("data-copied-text") || "Copied"
      : button.getAttribute("data-copy-failed-text") || "Copy failed";
    button.classList.toggle("copied", ok);
    window.clearTimeout(button._copyTimer);
    button._copyTimer = window.setTimeout(function () {
      button.textContent = button.getAttribute("data-label");
      button.classList.remove("copied");
    }, 1600);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    event.preventDefault();
    copy(textFor(button)).then(function (ok) { showCopied(button, ok); });
  });

  // Tap a QR code to show it full-screen at the counter; tap again (or Escape) to close.
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-qr-full]");
    if (opener) {
      event.preventDefault();
      var overlay = document.createElement("div");
      overlay.className = "qr-full";
      overlay.setAttribute("role", "dialog");
      overlay.setAttribute("aria-modal", "true");
      overlay.setAttribute("data-qr-close", "");
      var img = document.createElement("img");
      img.src = opener.getAttribute("data-qr-full");
      img.alt = opener.getAttribute("data-qr-name") || "";
      var name = document.createElement("div");
      name.className = "qr-full-name";
      name.textContent = opener.getAttribute("data-qr-name") || "";
      overlay.appendChild(img);
      overlay.appendChild(name);
      document.body.appendChild(overlay);
      return;
    }
    var closer = event.target.closest("[data-qr-close]");
    if (closer) closer.remove();
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll(".qr-full").forEach(function (node) { node.remove(); });
  });
})();
