// Runs static/js/checkout-card.js in node with a stubbed page and a stubbed server answering
// every `card/confirm` the same way (argv[3]: in_flight | expired | 400 | 429 | 500), the page
// opened on a payment in flight; prints what the script did as one JSON line.
const fs = require("fs");
const src = fs.readFileSync(process.argv[2], "utf8");
const scenario = process.argv[3];
let fetches = 0;
const timers = [];
function el(attrs) {
  return {
    attrs: attrs || {}, textContent: "", hidden: false, disabled: false,
    getAttribute(n) { return this.attrs[n] === undefined ? null : this.attrs[n]; },
    setAttribute(n, v) { this.attrs[n] = v; }, removeAttribute(n) { delete this.attrs[n]; },
    addEventListener() {}, querySelector() { return { value: "csrf" }; }
  };
}
const els = {
  "card-form": el({ "data-session": "s1", "data-key": "pk", "data-setup-only": "false", "data-in-flight": "a1" }),
  "card-needs-js": el(), "card-error": el(), "card-progress": el(), "card-submit": el()
};
global.document = { readyState: "complete", getElementById: (id) => els[id], querySelectorAll: () => [] };
const redirects = [];
global.window = {
  Stripe: () => ({ elements: () => ({ create: () => ({ mount() {} }) }) }),
  setTimeout: (fn, ms) => { timers.push([fn, ms]); },
  location: { assign(u) { redirects.push(u); } }
};
function answer(status, body, headers) {
  return Promise.resolve({
    ok: status < 400, status: status,
    headers: { get: (name) => (headers || {})[name] || null },
    json: () => Promise.resolve(body)
  });
}
global.fetch = function () {
  fetches++;
  if (scenario === "in_flight") return answer(200, { status: "in_flight", paymentAttemptId: "a1", paymentSessionStatus: "pending" });
  if (scenario === "expired") return answer(200, { status: "succeeded", paymentAttemptId: "a1", paymentSessionStatus: "expired" });
  if (scenario === "400") return answer(400, { message: "paymentAttemptId must name a card attempt of this payment session." });
  if (scenario === "429") return answer(429, { message: "Too many requests" }, { "Retry-After": "20" });
  return answer(500, {});
};
eval(src);
(async () => {
  const delays = [];
  for (let i = 0; i < 1000 && timers.length; i++) {
    const [fn, ms] = timers.shift();
    delays.push(ms);
    fn();
    for (let j = 0; j < 5; j++) await new Promise((r) => setImmediate(r));
  }
  console.log(JSON.stringify({
    fetches, delays, pending: timers.length, redirects,
    disabled: els["card-submit"].disabled, error: els["card-error"].textContent, progress: els["card-progress"].textContent
  }));
})();
