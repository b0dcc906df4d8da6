// The review card (Streamlit Custom Components v2): keys handled here, in the browser.
//
// Every press is bound to the card on screen when the key goes down: it goes into an outbox with the sample id
// and a client id, the next card (already in the page: the server sends a window of the queue) is drawn at once,
// and the whole unacknowledged outbox is sent to the server (a trigger value) until the server acknowledges each
// client id. The server records them in order, once per client id (a resend records nothing new), and answers
// per id: saved, duplicate, conflict (another tab of the same reviewer decided first) or undone. Undo (Z) queues
// an undo of this tab's last action behind whatever is still pending. Names are set as text (textContent), never
// as HTML. Python side: app/review/live_card.py.
//
// The same card walks a random audit (data.mode "audit", app/review/audit_card.py): it shows the image and the
// given label only (never the method's proposal or step data), K says the given label is right, 0-9 name the
// class, U unsure, O outlier, Z undo. Each mode keeps its own state (window.__amlkdCard, window.__amlkdAudit) and
// its own key listener; mounting one card makes the other deaf at once.
const TAB = Math.random().toString(36).slice(2, 10);
const KEYS = { a: "accept", k: "keep", u: "unsure", o: "outlier" };
const RESEND_MS = 1200;
const COALESCE_MS = 60;
const REMOUNT_MS = 3000;  // a card unmounted this recently is being redrawn: its keys still count

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

const STATE_OF = { review: "__amlkdCard", audit: "__amlkdAudit" };

function state(mode) {
  const name = STATE_OF[mode] || STATE_OF.review;
  if (!window[name]) {
    window[name] = { mode: STATE_OF[mode] ? mode : "review",
      cards: [], bySample: new Map(), pos: 0, queueId: null, outbox: [], actions: [], pendingOn: new Map(),
      seq: 0, sendSeq: 0, lastSent: 0, timer: null, notice: "", timings: [], presses: 0, data: null,
      setTrigger: null, root: null, active: false, inactiveSince: -Infinity, installed: false,
    };
  }
  return window[name];
}

function current(S) { return S.cards[S.pos]; }

function label(S, id) {
  return id === null || id === undefined ? "" : (S.data.class_names[id] ?? String(id));
}

function send(S, now) {
  if (!S.setTrigger) return;
  const since = performance.now() - S.lastSent;
  if (!now && since < COALESCE_MS) {
    if (!S.timer) S.timer = setTimeout(() => { S.timer = null; send(S, true); }, COALESCE_MS - since);
    return;
  }
  S.lastSent = performance.now();
  const card = current(S);
  S.setTrigger("sync", { seq: ++S.sendSeq, tab: TAB, sample: card ? card.sample : null, outbox: S.outbox });
}

function queueItem(S, item) {
  item.cid = `${TAB}-${++S.seq}`;
  S.outbox.push(item);
  S.pendingOn.set(item.sample, (S.pendingOn.get(item.sample) || 0) + 1);
  return item;
}

function decide(S, decision, classId) {
  const card = current(S);
  const d = S.data;
  if (!card) return false;
  if (!d.can_decide) { S.notice = d.why_not; return true; }
  if (decision === "accept" && d.mode === "audit") {
    S.notice = "An audit names the class: K if the given label is right, else its class (0-9), U unsure, O outlier.";
    return true;
  }
  if (decision === "accept" && d.blind) { S.notice = "Blind mode: the proposal is hidden, choose a class (0-9)."; return true; }
  let labelId = null;
  if (decision === "accept") labelId = card.proposal;
  if (decision === "relabel") {
    if (classId >= d.class_names.length) return false;
    if (classId === card.given) decision = "keep";
    labelId = classId;
  }
  if (decision === "keep") labelId = card.given;
  const seen = S.pendingOn.get(card.sample) ? null : (card.mine_id || 0);
  const item = queueItem(S, { kind: "decide", sample: card.sample, decision, label: labelId, proposal: card.proposal,
                              seen });
  card.local = { decision, label: labelId, state: "pending", cid: item.cid };
  S.actions.push({ cid: item.cid, sample: card.sample });
  S.notice = "";
  if (S.pos < S.cards.length - 1) S.pos += 1;
  return true;
}

function undo(S) {
  const last = S.actions.pop();
  if (!last) {
    queueItem(S, { kind: "undo_last", sample: current(S) ? current(S).sample : -1 });
    S.notice = "Undoing your last saved action…";
    return true;
  }
  queueItem(S, { kind: "undo", target: last.cid, sample: last.sample });
  const at = S.cards.findIndex((c) => c.sample === last.sample);
  if (at >= 0) {
    S.pos = at;
    S.cards[at].local = { state: "undoing" };
  }
  S.notice = "";
  return true;
}

function move(S, offset) {
  const next = Math.min(Math.max(S.pos + offset, 0), S.cards.length - 1);
  if (next === S.pos) return false;
  S.pos = next;
  S.notice = "";
  return true;
}

function onReviewPage() {
  return /\/review\/?$/.test(window.location.pathname);
}

function onKey(e, mode) {
  const S = state(mode);
  // Not "is the card mounted right now": Streamlit may remount it during a redraw, and a key pressed in that
  // moment still belongs to the card last shown (its state lives here, not in the DOM).
  const remounting = !S.active && performance.now() - S.inactiveSince < REMOUNT_MS;
  if (!S.data || !S.cards.length || !onReviewPage() || !(S.active || remounting)) return;
  const t = e.target;
  if (t && (["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) || t.isContentEditable)) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  let handled = false;
  const t0 = performance.now();
  if (e.repeat) { if (KEYS[key] || /^[0-9]$/.test(key) || key === "z") { e.preventDefault(); e.stopImmediatePropagation(); } return; }
  if (KEYS[key]) handled = decide(S, KEYS[key]);
  else if (/^[0-9]$/.test(key)) handled = decide(S, "relabel", Number(key));
  else if (key === "z") handled = undo(S);
  else if (key === "j" || key === "ArrowLeft") handled = move(S, -1);
  else if (key === "l" || key === "ArrowRight") handled = move(S, 1);
  if (!handled) return;
  e.preventDefault();
  e.stopImmediatePropagation();
  S.presses += 1;
  render(S);
  requestAnimationFrame(() => S.timings.push(performance.now() - t0));
  send(S);
}

function statusOf(S, card) {
  const local = card.local;
  if (local && local.state === "pending") return ["pending", `pending: ${local.decision}${local.label !== null ? " → " + label(S, local.label) : ""}`];
  if (local && local.state === "undoing") return ["pending", "pending: undo"];
  if (card.mine) return ["saved", `saved: ${card.mine.decision}${card.mine.label !== null ? " → " + label(S, card.mine.label) : ""}`];
  return ["open", "not decided by you"];
}

function button(S, text, hint, onClick, cls) {
  const b = el("button", "amlkd-btn" + (cls ? " " + cls : ""), text);
  if (hint) b.appendChild(el("kbd", null, hint));
  b.type = "button";
  b.addEventListener("click", (e) => {
    e.preventDefault();
    const t0 = performance.now();
    if (onClick(S)) {
      S.presses += 1;
      render(S);
      requestAnimationFrame(() => S.timings.push(performance.now() - t0));
      send(S);
    }
  });
  return b;
}

function render(S) {
  const root = S.root;
  if (!root) return;
  const d = S.data;
  let body = root.querySelector(".amlkd-card");
  if (!body) { body = el("div", "amlkd-card"); root.appendChild(body); }
  body.replaceChildren();
  const card = current(S);
  const pending = S.outbox.length;
  const head = el("div", "amlkd-head");
  head.appendChild(el("span", "amlkd-sync " + (pending ? "is-pending" : "is-saved"),
                      pending ? `${pending} pending` : "all saved"));
  if (!card) {
    head.appendChild(el("span", "amlkd-title", "Nothing in the queue"));
    body.appendChild(head);
    return;
  }
  head.appendChild(el("span", "amlkd-title", `Sample ${card.key}`));
  head.appendChild(el("span", "amlkd-pos", `${card.position + 1} of ${d.total}`));
  body.appendChild(head);
  body.dataset.sample = String(card.sample);
  if (S.notice) body.appendChild(el("div", "amlkd-notice", S.notice));
  const main = el("div", "amlkd-main");
  const pic = el("div", "amlkd-pic");
  if (card.image) {
    const img = el("img");
    img.src = card.image;  // a data: URL the server made from the sample's pixels
    img.alt = `sample ${card.key}`;
    pic.appendChild(img);
  } else if (card.point) {
    pic.appendChild(el("div", "amlkd-point", `point (${card.point[0].toFixed(2)}, ${card.point[1].toFixed(2)})`));
  }
  main.appendChild(pic);
  const facts = el("div", "amlkd-facts");
  const row = (name, value, cls) => {
    const r = el("div", "amlkd-row" + (cls ? " " + cls : ""));
    r.appendChild(el("span", "amlkd-name", name));
    r.appendChild(el("span", "amlkd-value", value));
    facts.appendChild(r);
  };
  row("Given label", label(S, card.given));
  if (d.mode === "audit") {
    renderAudit(S, body, main, facts, card, row);
    return;
  }
  row("Proposal", d.blind && !card.mine ? "hidden until you decide (blind mode)" : label(S, card.proposal));
  const [cls, text] = statusOf(S, card);
  row("You", text, "amlkd-status is-" + cls);
  if (!d.blind || card.mine) {
    for (const line of card.evidence) facts.appendChild(el("div", "amlkd-evidence", line));
    if (card.votes.length) row("Votes", card.votes.join(" · "));
    if (card.consensus) row("Consensus", card.consensus, card.disputed ? "is-disputed" : "");
  }
  if (card.flags) row("Flagged", card.flags);
  main.appendChild(facts);
  body.appendChild(main);
  const keys = el("div", "amlkd-keys");
  if (!d.blind) keys.appendChild(button(S, `Accept ${label(S, card.proposal)}`, "A", (s) => decide(s, "accept"), "is-primary"));
  keys.appendChild(button(S, `Keep given ${label(S, card.given)}`, "K", (s) => decide(s, "keep")));
  commonKeys(S, body, keys);
}

function commonKeys(S, body, keys) {
  const d = S.data;
  keys.appendChild(button(S, "Unsure", "U", (s) => decide(s, "unsure")));
  keys.appendChild(button(S, "Outlier", "O", (s) => decide(s, "outlier")));
  keys.appendChild(button(S, "Undo", "Z", (s) => undo(s)));
  body.appendChild(keys);
  const classes = el("div", "amlkd-keys amlkd-classes");
  d.class_names.slice(0, 10).forEach((name, c) => classes.appendChild(button(S, name, String(c), (s) => decide(s, "relabel", c))));
  body.appendChild(classes);
  const nav = el("div", "amlkd-keys");
  nav.appendChild(button(S, "Previous", "J", (s) => move(s, -1)));
  nav.appendChild(button(S, "Next", "L", (s) => move(s, 1)));
  body.appendChild(nav);
}

// The audit card: the picture, the given label and what you decided; no proposal, no evidence, no votes.
function renderAudit(S, body, main, facts, card, row) {
  const [cls, text] = statusOf(S, card);
  row("You", text, "amlkd-status is-" + cls);
  main.appendChild(facts);
  body.appendChild(main);
  const keys = el("div", "amlkd-keys");
  keys.appendChild(button(S, `Given label is right: ${label(S, card.given)}`, "K", (s) => decide(s, "keep"), "is-primary"));
  commonKeys(S, body, keys);
}

function merge(S, data) {
  const reset = data.queue_id !== S.queueId;
  if (reset) {
    S.queueId = data.queue_id;
    S.cards = data.cards.map((c) => ({ ...c }));
    S.bySample = new Map(S.cards.map((c) => [c.sample, c]));
    const at = S.cards.findIndex((c) => c.sample === data.start_sample);
    S.pos = at >= 0 ? at : 0;
  } else {
    for (const c of data.cards) {
      const mine = S.bySample.get(c.sample);
      if (mine) {
        const local = mine.local;
        Object.assign(mine, c);
        mine.local = local;
      } else {
        const copy = { ...c };
        S.cards.push(copy);
        S.bySample.set(c.sample, copy);
      }
    }
  }
  const acks = data.acks || {};
  const left = [];
  for (const item of S.outbox) {
    const ack = acks[item.cid];
    if (!ack) { left.push(item); continue; }
    const n = (S.pendingOn.get(item.sample) || 1) - 1;
    if (n > 0) S.pendingOn.set(item.sample, n); else S.pendingOn.delete(item.sample);
    const card = S.bySample.get(item.sample);
    if (!card) continue;
    if (card.local && card.local.cid === item.cid) card.local = null;
    if (card.local && card.local.state === "undoing" && item.kind !== "decide") card.local = null;
    card.mine = ack.current;
    card.mine_id = ack.current ? ack.current.id : 0;
    if (ack.status === "conflict") {
      const other = ack.current ? `${ack.current.decision}${ack.current.label !== null ? " → " + label(S, ack.current.label) : ""}` : "undone it";
      S.notice = `Sample ${card.key}: another tab of yours decided first (${other}); this press was not recorded. Press again to change it.`;
    } else if (ack.status === "denied" || ack.status === "error") {
      S.notice = ack.message || "Not recorded.";
    }
  }
  S.outbox = left;
  if (!reset && data.notice) S.notice = data.notice;
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const S = state(data.mode);
  for (const [mode, name] of Object.entries(STATE_OF)) {  // the other card (review or audit) stops hearing keys now
    if (mode !== S.mode && window[name]) { window[name].active = false; window[name].inactiveSince = -Infinity; }
  }
  S.setTrigger = setTriggerValue;
  S.root = parentElement;
  S.active = true;
  S.data = data;
  merge(S, data);
  render(S);
  if (!S.installed) {
    S.installed = true;
    window.addEventListener("keydown", (e) => onKey(e, S.mode), true);
    setInterval(() => {
      const s = state(S.mode);
      if (s.outbox.length && performance.now() - s.lastSent > RESEND_MS) send(s, true);
    }, 400);
  }
  if (S.outbox.length && performance.now() - S.lastSent > RESEND_MS) send(S, true);
  return () => { S.active = false; S.inactiveSince = performance.now(); };
}
