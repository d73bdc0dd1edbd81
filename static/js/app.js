// Small glue for htmx; no build step.
(function () {
  "use strict";
  // Drop empty fields from htmx GETs, so that a filter URL pushed to the address bar
  // holds only the filters in use (?status=lost, not ?q=&status=lost&store=&...).
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.verb !== "get") return;
    var formData = event.detail.formData;
    Array.from(new Set(formData.keys())).forEach(function (key) {
      if (formData.getAll(key).every(function (value) { return value === ""; })) {
        formData.delete(key);
      }
    });
  });
})();
