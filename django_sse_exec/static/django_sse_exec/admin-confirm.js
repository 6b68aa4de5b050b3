/*
 * admin-confirm.js: the admin's "Close execution" asks first. A form with
 * data-confirm="<question>" is submitted only if the question is confirmed.
 * A script file rather than an inline onsubmit, so the admin page works under
 * a Content-Security-Policy without script-src 'unsafe-inline'.
 */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var question = event.target && event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
})();
