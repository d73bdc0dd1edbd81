// Campaign pages: add a step to the SOP editor and show its trigger's settings, copy a
// to-do's message, confirm archiving.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var add = event.target.closest("#add-step");
    if (add) {
      var total = document.querySelector("#id_steps-TOTAL_FORMS");
      var template = document.querySelector("#step-template");
      var index = parseInt(total.value, 10);
      var html = template.innerHTML.replace(/__prefix__/g, String(index));
      document.querySelector("#steps").insertAdjacentHTML("beforeend", html);
      var added = document.querySelectorAll("#steps [data-step]");
      added[added.length - 1].querySelector("[data-step-number]").textContent = String(index + 1);
      total.value = String(index + 1);
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      var text = source ? source.innerText : "";
      var done = function () { copy.textContent = copy.getAttribute("data-copied") || "✓"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done);
      } else {
        // Plain-HTTP intranets have no Clipboard API: select and copy the old way.
        var area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
        done();
      }
    }
  });
  // The SOP editor shows only the settings of the chosen trigger.
  function showTrigger() {
    var kind = document.querySelector("#id_trigger_kind");
    if (!kind) return;
    document.querySelectorAll("[data-trigger]").forEach(function (block) {
      block.hidden = block.getAttribute("data-trigger") !== kind.value;
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.id === "id_trigger_kind") showTrigger();
  });
  document.addEventListener("DOMContentLoaded", showTrigger);
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
