// The hosted checkout's USDC path: copy buttons, the form that submits a pasted transaction
// hash (and proves the payer's address when the server asks), the browser-wallet button
// (EIP-1193: shown only where window.ethereum exists), and the live status of the settlement,
// polled until the chain confirms or refutes it. Whether anything is paid is decided on the
// server from the chain, never from what the browser reports.
(function () {
  "use strict";
  var POLL_MS = 3000;
  var TRANSFER_SELECTOR = "0xa9059cbb"; // transfer(address,uint256)

  function start() {
    var root = document.getElementById("usdc");
    if (!root) return;
    var sessionId = root.getAttribute("data-session");
    var form = document.getElementById("usdc-form");
    var hashInput = document.getElementById("usdc-hash");
    var payerInput = document.getElementById("usdc-payer");
    var prove = document.getElementById("usdc-prove");
    var proofMessage = document.getElementById("usdc-proof-message");
    var signatureInput = document.getElementById("usdc-signature");
    var proveButton = document.getElementById("usdc-prove-submit");
    var errorBox = document.getElementById("usdc-error");
    var progress = document.getElementById("usdc-progress");
    var submit = document.getElementById("usdc-submit");
    var walletButton = document.getElementById("usdc-wallet");
    var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    var polling = null;

    document.getElementById("usdc-needs-js").hidden = true;
    form.hidden = false;

    // copy buttons
    var copies = root.querySelectorAll("button.copy");
    for (var i = 0; i < copies.length; i++) {
      copies[i].hidden = false;
      copies[i].addEventListener("click", copy);
    }
    function copy(event) {
      var button = event.currentTarget;
      var text = document.getElementById(button.getAttribute("data-copy")).textContent.trim();
      var done = function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () { select(button); });
      } else {
        select(button);
      }
    }
    function select(button) {
      var range = document.createRange();
      range.selectNodeContents(document.getElementById(button.getAttribute("data-copy")));
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }

    function post(path, body) {
      return fetch("/checkout/" + sessionId + "/usdc/" + path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body)
      }).then(answer);
    }
    function answer(response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.message || "The request failed (" + response.status + ").");
          error.code = data.code || (data.errors && data.errors[0] && data.errors[0].code);
          error.details = data.details || {};
          throw error;
        }
        return data;
      });
    }

    function busy(on) {
      submit.disabled = on;
      proveButton.disabled = on;
      walletButton.disabled = on;
      if (on) submit.setAttribute("aria-busy", "true");
      else submit.removeAttribute("aria-busy");
    }
    function fail(error) {
      errorBox.textContent = error.message || String(error);
      progress.textContent = "";
      busy(false);
      if (error.code === "PAYER_NOT_PROVEN" && error.details.message) {
        if (!walletButton.hidden) errorBox.textContent += " Or use \u201cPay with browser wallet\u201d, which does both.";
        proofMessage.textContent = error.details.message;
        prove.hidden = false;
        signatureInput.focus();
      }
    }

    function show(settlement) {
      progress.textContent = settlement.message;
      if (settlement.status === "confirmed") {
        stopPolling();
        window.location.assign(settlement.redirect || "/checkout/" + sessionId);
      } else if (settlement.status === "failed") {
        stopPolling();
        errorBox.textContent = settlement.message;
        progress.textContent = "";
        busy(false);
      } else {
        busy(true);
        poll(settlement.id);
      }
    }
    function stopPolling() {
      if (polling) clearTimeout(polling);
      polling = null;
    }
    function poll(settlementId) {
      stopPolling();
      polling = setTimeout(function () {
        fetch("/checkout/" + sessionId + "/usdc/settlements/" + settlementId, {
          credentials: "same-origin",
          headers: { Accept: "application/json" }
        })
          .then(answer)
          .then(show)
          .catch(function () { poll(settlementId); }); // a lost poll: ask again
      }, POLL_MS);
    }

    function valid(hash, payer) {
      if (!/^0x[0-9a-fA-F]{64}$/.test(hash)) {
        hashInput.setAttribute("aria-invalid", "true");
        hashInput.focus();
        return "The transaction hash must be 0x followed by 64 hex digits.";
      }
      hashInput.removeAttribute("aria-invalid");
      if (!/^0x[0-9a-fA-F]{40}$/.test(payer)) {
        payerInput.setAttribute("aria-invalid", "true");
        payerInput.focus();
        return "The address you paid from must be 0x followed by 40 hex digits.";
      }
      payerInput.removeAttribute("aria-invalid");
      return null;
    }

    function settle(hash, payer) {
      progress.textContent = "Submitting the transaction…";
      return post("settlement", { transactionHash: hash, payerAddress: payer }).then(show);
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      errorBox.textContent = "";
      var hash = hashInput.value.trim();
      var payer = payerInput.value.trim();
      var problem = valid(hash, payer);
      if (problem) { errorBox.textContent = problem; return; }
      busy(true);
      settle(hash, payer).catch(fail);
    });

    proveButton.addEventListener("click", function () {
      errorBox.textContent = "";
      var hash = hashInput.value.trim();
      var payer = payerInput.value.trim();
      var problem = valid(hash, payer);
      if (problem) { errorBox.textContent = problem; return; }
      busy(true);
      progress.textContent = "Checking the signature…";
      post("proof", { address: payer, signature: signatureInput.value.trim() })
        .then(function () { prove.hidden = true; return settle(hash, payer); })
        .catch(fail);
    });

    // the browser wallet (EIP-1193)
    var ethereum = window.ethereum;
    if (ethereum && typeof ethereum.request === "function") {
      walletButton.hidden = false;
      walletButton.addEventListener("click", function () {
        errorBox.textContent = "";
        busy(true);
        payWithWallet(ethereum).catch(function (error) {
          fail(error && error.code === 4001 ? new Error("The wallet request was declined.") : error);
        });
      });
    }

    function utf8Hex(text) {
      var bytes = new TextEncoder().encode(text);
      var hex = "0x";
      for (var j = 0; j < bytes.length; j++) hex += ("0" + bytes[j].toString(16)).slice(-2);
      return hex;
    }
    function word(hexWithoutPrefix) {
      return ("0".repeat(64) + hexWithoutPrefix).slice(-64);
    }
    function proofFor(address) {
      var template = root.getAttribute("data-proof-message");
      var at = template.lastIndexOf("{address}");
      return template.slice(0, at) + address + template.slice(at + "{address}".length);
    }

    function payWithWallet(wallet) {
      var chainId = Number(root.getAttribute("data-chain-id"));
      var address;
      progress.textContent = "Connecting to your wallet…";
      return wallet.request({ method: "eth_requestAccounts" })
        .then(function (accounts) {
          if (!accounts || !accounts.length) throw new Error("The wallet shared no account.");
          address = accounts[0];
          payerInput.value = address;
          return wallet.request({ method: "eth_chainId" });
        })
        .then(function (current) {
          if (parseInt(current, 16) === chainId) return null;
          progress.textContent = "Asking your wallet to switch to " + root.getAttribute("data-chain") + "…";
          return wallet.request({ method: "wallet_switchEthereumChain", params: [{ chainId: "0x" + chainId.toString(16) }] })
            .catch(function () {
              throw new Error("Your wallet is on another chain: switch it to " + root.getAttribute("data-chain") +
                " (chain id " + chainId + "), then try again.");
            });
        })
        .then(function () {
          progress.textContent = "Sign the message in your wallet to prove the address is yours…";
          return wallet.request({ method: "personal_sign", params: [utf8Hex(proofFor(address)), address] });
        })
        .then(function (signature) {
          return post("proof", { address: address, signature: signature });
        })
        .then(function () {
          progress.textContent = "Confirm the transfer in your wallet…";
          var data = TRANSFER_SELECTOR +
            word(root.getAttribute("data-recipient").slice(2).toLowerCase()) +
            word(BigInt(root.getAttribute("data-amount")).toString(16));
          return wallet.request({
            method: "eth_sendTransaction",
            params: [{ from: address, to: root.getAttribute("data-token"), data: data, value: "0x0" }]
          });
        })
        .then(function (hash) {
          hashInput.value = hash;
          return settle(hash, address);
        });
    }

    // a settlement already pending for this payment (the page reloaded): follow it
    var pending = root.getAttribute("data-settlement");
    if (pending) {
      busy(true);
      poll(pending);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
