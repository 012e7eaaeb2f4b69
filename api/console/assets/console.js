// Bazaar console: live values over the console's own Server-Sent Events.
// Elements with data-k="key" show snapshot values; the Orders live page
// adds and moves rows as order events arrive.
"use strict";
(function () {
  function setState(s) {
    var el = document.getElementById("live");
    if (el) { el.textContent = s; el.dataset.state = s; }
  }
  function age(s) {
    if (!s || s <= 0) return "–";
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 172800) return Math.floor(s / 3600) + "h";
    return Math.floor(s / 86400) + "d";
  }
  function set(k, v) {
    document.querySelectorAll('[data-k="' + CSS.escape(k) + '"]').forEach(function (el) {
      if (el.textContent !== String(v)) el.textContent = v;
    });
  }
  function list(id, items, fmt, empty) {
    var ul = document.getElementById(id);
    if (!ul) return;
    ul.replaceChildren();
    (items || []).forEach(function (it) { var li = document.createElement("li"); fmt(li, it); ul.appendChild(li); });
    if (!ul.children.length && empty) { var li = document.createElement("li"); li.textContent = empty; ul.appendChild(li); }
  }
  function snapshot(s) {
    set("at", new Date(s.at).toISOString().replace("T", " ").slice(0, 19) + " UTC");
    set("outbox.backlog", s.outbox.backlog);
    set("outbox.oldest", age(s.outbox.oldest_age_seconds));
    set("relay", s.relay_per_second == null ? "measuring…" : s.relay_per_second.toFixed(1) + "/s");
    set("sse", s.sse_clients);
    set("printers.online", s.printers.online);
    set("printers.offline", s.printers.offline);
    (s.streams || []).forEach(function (st) { set("s/" + st.name + "/length", st.length); });
    (s.groups || []).forEach(function (g) {
      var p = "g/" + g.name + "/" + g.stream + "/";
      set(p + "lag", g.lag == null ? "unknown" : g.lag);
      set(p + "pending", g.pending);
      set(p + "oldest", age(g.oldest_pending_age_seconds));
      set(p + "dlq", g.dead_letters);
    });
    (s.queues || []).forEach(function (q) {
      ["pending", "active", "scheduled", "retry", "archived"].forEach(function (k) { set("q/" + q.name + "/" + k, q[k]); });
    });
    var firing = (s.alerts || []).filter(function (a) { return a.firing; });
    set("alerts.firing", firing.length);
    list("alerts", firing, function (li, a) {
      li.className = "bad sev-" + a.severity;
      var link = document.createElement("a"); link.href = a.link;
      var b = document.createElement("strong"); b.textContent = a.name;
      link.append(b, " " + a.subject + ": " + a.detail);
      li.appendChild(link);
    });
    var biz = s.business || {};
    list("biz-orders", biz.orders_per_minute, function (li, r) {
      var b = document.createElement("strong"); b.textContent = r.per_minute.toFixed(1);
      li.append(r.status + ": ", b, " (" + r.orders + ")");
    });
    list("biz-revenue", biz.revenue, function (li, r) { li.textContent = r.display; }, "none yet");
    list("biz-cancel", biz.cancellations, function (li, r) { li.textContent = r.reason + ": " + r.orders; }, "none");
    list("biz-sellers", biz.top_sellers, function (li, r) { li.textContent = r.seller + ": " + r.orders; }, "no orders yet");
    var box = document.getElementById("redrive");
    if (box) {
      (s.redrives || []).forEach(function (r) {
        if (r.group !== box.dataset.group) return;
        var bar = document.getElementById("redrive-progress");
        bar.max = r.total; bar.value = r.moved;
        document.getElementById("redrive-moved").textContent = r.moved;
        document.getElementById("redrive-total").textContent = r.total;
        document.getElementById("redrive-state").textContent = r.running ? "running" : r.cancelled ? "cancelled" : r.error ? "failed: " + r.error : "done";
      });
    }
  }
  function liveSnapshots() {
    var es = new EventSource("/console/live");
    es.addEventListener("snapshot", function (e) { setState("live"); snapshot(JSON.parse(e.data)); });
    es.onerror = function () { setState("reconnecting…"); };
  }
  function cell(tr, label, text, cls) {
    var td = document.createElement("td"); td.dataset.label = label;
    if (cls) { var sp = document.createElement("span"); sp.className = cls; sp.textContent = text; td.appendChild(sp); }
    else td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function liveOrders(table) {
    var paused = false, held = [];
    var pause = document.getElementById("pause");
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume" : "Pause";
      if (!paused) { held.forEach(show); held = []; }
    });
    var body = table.tBodies[0];
    function show(o) {
      var old = body.querySelector('tr[data-order="' + o.id + '"]');
      var gone = o.status.indexOf("left:") === 0;
      if (gone) { if (old) old.remove(); return; }
      var tr = document.createElement("tr");
      tr.dataset.order = o.id; tr.className = "fresh";
      cell(tr, "Order", o.short, "id");
      cell(tr, "Seller", o.seller);
      cell(tr, "Buyer", o.buyer);
      cell(tr, "Items", String(o.items));
      cell(tr, "Amount", o.amount);
      var st = cell(tr, "Status", o.status, "status st-" + o.status);
      if (o.reason) { var r = document.createElement("span"); r.className = "muted"; r.textContent = " (" + o.reason + ")"; st.appendChild(r); }
      var steps = cell(tr, "Steps", "");
      var ol = document.createElement("ol"); ol.className = "steps";
      (o.steps || []).forEach(function (s) {
        var li = document.createElement("li"); li.className = "step step-" + s.state; li.textContent = s.name; ol.appendChild(li);
      });
      steps.appendChild(ol);
      cell(tr, "Created", o.created_at);
      if (old) old.replaceWith(tr); else body.prepend(tr);
      while (body.rows.length > 200) body.deleteRow(-1);
      var none = document.getElementById("no-orders");
      if (none) none.remove();
    }
    var q = new URLSearchParams();
    if (table.dataset.seller) q.set("seller", table.dataset.seller);
    if (table.dataset.status) q.set("status", table.dataset.status);
    var es = new EventSource("/console/live/orders?" + q.toString());
    es.addEventListener("ready", function () { setState("live"); });
    es.addEventListener("order", function (e) { var o = JSON.parse(e.data); if (paused) held.push(o); else show(o); });
    es.addEventListener("announcement", function (e) {
      var a = JSON.parse(e.data), banner = document.getElementById("banner");
      var now = Date.now();
      banner.textContent = a.message;
      banner.hidden = !(Date.parse(a.starts_at) <= now && now < Date.parse(a.expires_at));
    });
    es.onerror = function () { setState("reconnecting…"); };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var orders = document.getElementById("orders");
    if (orders && orders.dataset.live === "true") { liveOrders(orders); return; }
    if (document.querySelector("[data-k]") || document.getElementById("redrive") || document.getElementById("live")) liveSnapshots();
  });
})();
