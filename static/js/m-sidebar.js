/* The WeCom chat sidebar: sign in to the JS-SDK (wx.agentConfig, signed by the server),
 * ask the client which external contact the chat is with, and open that customer's card.
 * Outside WeCom (no `wx`, or a browser that is not the WeCom client) it shows why nothing
 * happens instead of waiting forever. */
(function () {
  "use strict";
  var root = document.getElementById("m-sidebar");
  var configNode = document.getElementById("m-agent-config");
  if (!root || !configNode) return;
  var config = null;
  try {
    config = JSON.parse(configNode.textContent);
  } catch (e) {
    config = null;
  }

  function show(state, detail) {
    var messages = root.querySelectorAll(".m-sidebar-msg");
    for (var i = 0; i < messages.length; i++) {
      messages[i].hidden = messages[i].getAttribute("data-state") !== state;
    }
    root.setAttribute("data-state", state);
    var slot = root.querySelector(".m-sidebar-detail");
    if (slot) slot.textContent = detail || "";
  }

  var wx = window.wx;
  // jweixin defines `wx` in any browser; only the WeCom client (UA "wxWork") answers it.
  var inWeCom = /wxwork/i.test(navigator.userAgent);
  if (!wx || typeof wx.agentConfig !== "function" || !inWeCom) {
    show("outside");
    return;
  }
  if (!config) {
    show("error", "agentConfig: the server could not sign the page");
    return;
  }

  show("loading");
  var settled = false;
  // A client that never calls back (old version, sidebar not enabled) must not leave the
  // spinner up for good.
  var timer = window.setTimeout(function () {
    if (!settled) show("error", "timeout");
  }, 10000);

  function fail(what, res) {
    settled = true;
    window.clearTimeout(timer);
    show("error", what + ": " + ((res && (res.err_msg || res.errMsg)) || "failed"));
  }

  // WeCom 3.0.24+ takes agentConfig without a prior wx.config.
  wx.agentConfig({
    corpid: config.corpid,
    agentid: config.agentid,
    timestamp: config.timestamp,
    nonceStr: config.nonceStr,
    signature: config.signature,
    jsApiList: ["getCurExternalContact"],
    success: function () {
      wx.invoke("getCurExternalContact", {}, function (res) {
        if (res && res.err_msg === "getCurExternalContact:ok" && res.userId) {
          settled = true;
          window.clearTimeout(timer);
          var url = root.getAttribute("data-contact-url");
          window.location.replace(
            url.replace("__external_userid__", encodeURIComponent(res.userId))
          );
        } else {
          fail("getCurExternalContact", res);
        }
      });
    },
    fail: function (res) {
      fail("agentConfig", res);
    },
  });
})();
