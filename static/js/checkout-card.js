// The hosted checkout's card form: Stripe.js collects the card (confirmCardSetup on a
// SetupIntent the server made), then the server charges what is due and decides the outcome;
// only a PaymentIntent that requires the customer's action goes back to Stripe.js
// (confirmCardPayment), after which the server is asked again. The browser never decides
// whether the session is paid.
(function () {
  "use strict";
  var LABELS = {
    number: "Card number",
    exp_month: "Expiry month (MM)",
    exp_year: "Expiry year (YY)",
    cvc: "Security code (CVC)",
    postal_code: "Postal code"
  };

  var PLACEHOLDERS = { number: "1234 1234 1234 1234", exp_month: "MM", exp_year: "YY", cvc: "CVC", postal_code: "Postal code" };

  function start() {
    var form = document.getElementById("card-form");
    if (!form) return;
    var needsJs = document.getElementById("card-needs-js");
    var errorBox = document.getElementById("card-error");
    var progress = document.getElementById("card-progress");
    var button = document.getElementById("card-submit");
    var sessionId = form.getAttribute("data-session");
    var setupOnly = form.getAttribute("data-setup-only") === "true";
    var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

    if (typeof window.Stripe !== "function") {
      needsJs.textContent = "Card payments could not be loaded (Stripe.js did not load). Reload the page to try again.";
      return;
    }
    var stripe = window.Stripe(form.getAttribute("data-key"));
    var card = stripe.elements().create("card", { hidePostalCode: false });
    card.mount("#card-element");
    // localstripe's stand-in draws plain inputs named only by their placeholder: label them
    var inputs = document.querySelectorAll("#card-element input");
    for (var i = 0; i < inputs.length; i++) {
      var name = inputs[i].getAttribute("placeholder");
      if (!inputs[i].getAttribute("aria-label")) inputs[i].setAttribute("aria-label", LABELS[name] || name);
      if (PLACEHOLDERS[name]) inputs[i].setAttribute("placeholder", PLACEHOLDERS[name]);
      inputs[i].setAttribute("autocomplete", "off");
      inputs[i].setAttribute("inputmode", name === "postal_code" ? "text" : "numeric");
    }
    needsJs.hidden = true;
    form.hidden = false;

    function post(path, body) {
      return fetch("/checkout/" + sessionId + "/card/" + path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body || {})
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            var error = new Error(data.message || "The payment could not be completed (" + response.status + ").");
            error.status = response.status;
            error.retryAfter = parseInt(response.headers.get("Retry-After") || "0", 10) || 0;
            throw error;
          }
          return data;
        });
      });
    }

    function fail(message) {
      errorBox.textContent = message;
      progress.textContent = "";
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }

    function settle(result) {
      if (result.status === "saved") {
        progress.textContent = "Your card was saved.";
        window.location.assign(result.redirect || "/checkout/" + sessionId);
        return null;
      }
      if (result.paymentSessionStatus === "paid") {
        progress.textContent = "Payment received. Thank you.";
        window.location.assign(result.redirect || "/checkout/" + sessionId);
        return null;
      }
      if (result.status === "failed") {
        fail(result.failureReason || "The card was declined.");
        return null;
      }
      if (result.nextAction && result.nextAction.clientSecret) {
        progress.textContent = "Your bank asks you to confirm this payment.";
        return stripe.confirmCardPayment(result.nextAction.clientSecret).then(function () {
          // whatever Stripe.js says, the server retrieves the PaymentIntent and decides
          return post("confirm", { paymentAttemptId: result.paymentAttemptId }).then(function (again) {
            if (again.status === "in_flight" && !(again.nextAction && again.nextAction.clientSecret)) {
              watch(again.paymentAttemptId);
              return null;
            }
            if (again.status === "in_flight") {
              fail("The payment was not confirmed. Try again, or use another card.");
              return null;
            }
            return settle(again);
          });
        });
      }
      if (result.status === "in_flight") {
        watch(result.paymentAttemptId);
        return null;
      }
      if (result.status === "succeeded") {
        // the card was charged after this link stopped taking payments (it expired, or what
        // was due was paid otherwise): the money is on the customer's balance
        progress.textContent = "Your payment was received and added to your balance; this link no longer takes payments.";
        return null;
      }
      fail("The payment could not be completed. Reload this page to see where it stands.");
      return null;
    }

    // A payment whose outcome is not known yet (Stripe has not answered, or the page was
    // reloaded while it ran): the server is asked again every few seconds (the first time at
    // once when the page opens on it), at most WATCH_TIMES times, and the form stays disabled
    // meanwhile so that nothing is paid twice. A refusal the server means (a 4xx) ends it; a
    // rate limit waits as long as it says.
    var WATCH_EVERY_MS = 5000;
    var WATCH_TIMES = 60;
    function watch(attemptId, times, delayMs) {
      var left = times === undefined ? WATCH_TIMES : times;
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      if (left <= 0) {
        progress.textContent = "The payment is still being processed. Reload this page later to see its result; do not pay again.";
        return;
      }
      if (delayMs !== 0 || !progress.textContent) {
        progress.textContent = "The payment is being processed; this page will show it once it is done.";
      }
      window.setTimeout(function () {
        post("confirm", { paymentAttemptId: attemptId })
          .then(function (again) {
            if (again.status === "in_flight" && !(again.nextAction && again.nextAction.clientSecret)) {
              watch(attemptId, left - 1, WATCH_EVERY_MS);
              return null;
            }
            return settle(again);
          })
          .catch(function (error) {
            if (error.status === 429) {
              watch(attemptId, left - 1, Math.max(WATCH_EVERY_MS, error.retryAfter * 1000));
            } else if (error.status && error.status < 500) {
              fail(error.message);
            } else {
              watch(attemptId, left - 1, WATCH_EVERY_MS);  // Stripe or the network: ask again
            }
          });
      }, delayMs === undefined ? WATCH_EVERY_MS : delayMs);
    }

    var inFlight = form.getAttribute("data-in-flight");
    if (inFlight) watch(inFlight, WATCH_TIMES, 0);

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      errorBox.textContent = "";
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      progress.textContent = "Checking your card…";
      post("setup")
        .then(function (setup) {
          return stripe.confirmCardSetup(setup.clientSecret, { payment_method: { card: card } }).then(function (result) {
            if (result.error) throw new Error(result.error.message || "The card could not be saved.");
            progress.textContent = setupOnly ? "Saving your card…" : "Paying…";
            return post("pay", { setupIntentId: result.setupIntent.id });
          });
        })
        .then(settle)
        .catch(function (error) { fail(error.message || String(error)); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
