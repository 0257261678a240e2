// fleetconfig dashboard: the few behaviours htmx attributes do not cover.
// Loaded as a file (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  // Live regions marked data-pause-when-selected="<input name>" skip their refresh while
  // the person has something selected in them, so a poll never clears a selection.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var name = elt.getAttribute && elt.getAttribute("data-pause-when-selected");
    if (name && elt.querySelector('input[name="' + name + '"]:checked')) {
      event.preventDefault();
      elt.classList.add("paused");
      return;
    }
    if (elt.classList) elt.classList.remove("paused");
    // A new action clears the previous action's error message.
    var verb = (event.detail.requestConfig && event.detail.requestConfig.verb) || "get";
    if (verb !== "get") {
      var flash = document.getElementById("flash");
      if (flash) flash.innerHTML = "";
    }
  });

  // ...and a refresh (a GET) that answers after something was selected meanwhile is not
  // swapped in. An action's answer (a POST on the selection) is.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var name = target && target.getAttribute && target.getAttribute("data-pause-when-selected");
    var verb = (event.detail.requestConfig && event.detail.requestConfig.verb) || "get";
    if (name && verb === "get" && target.querySelector('input[name="' + name + '"]:checked')) {
      event.detail.shouldSwap = false;
    }
  });

  // A form marked data-reset-on-success is cleared once its request succeeded (staging:
  // the same devices are not picked twice by accident).
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (elt instanceof HTMLFormElement && elt.hasAttribute("data-reset-on-success") && status >= 200 && status < 300) {
      elt.reset();
    }
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    var name = box.getAttribute("data-select-all");
    if (name) {
      var scope = box.closest("form") || document;
      scope.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (other) {
        other.checked = box.checked;
      });
    }
    var live = box.closest("[data-pause-when-selected]");
    if (live) showPaused(live);
  });

  // After an action redraws a live region, its selection is gone: show it live again.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target instanceof Element && target.hasAttribute("data-pause-when-selected")) {
      showPaused(target);
    }
  });

  function showPaused(live) {
    var name = live.getAttribute("data-pause-when-selected");
    live.classList.toggle("paused", Boolean(live.querySelector('input[name="' + name + '"]:checked')));
  }

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
    }
  });

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
})();
