// The chat page of `frugal serve`: keeps the conversation in the page, sends it to
// /v1/chat/completions with "stream": true and shows the reply as its server-sent events
// arrive. When the conversation outgrows the context, the oldest turns are left out of the
// request (the system prompt stays), as `frugal chat` does, keeping a quarter of the context
// free for the reply. With ?autotest=1 it sends one message on load (?message=, ?temperature=,
// ?max_tokens=) and writes the outcome into #autotest-result, for the headless browser test.
// Every URL is relative to the page, so a reverse proxy may serve the server under a path
// prefix (nginx `location /llm/ { proxy_pass http://127.0.0.1:8080/; }`).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const autotest = params.get("autotest") === "1";
const conversation = [];  // {role, content, element}: the turns still sent with each request
let chat = 0;             // bumped by "New chat": a send() from an older chat must not touch this one
let controller = null;    // AbortController of the reply being streamed
let contextSize = null;   // the served model's context in tokens, from v1/models
let modelRequest = 0;     // the latest loadModel() call: an older answer must not overwrite it

// Settings survive a reload; the API key only for this tab's session (sessionStorage), so
// that it is not left in the browser's storage for good.
for (const id of ["system", "temperature", "max-tokens", "api-key"]) {
  const storage = id === "api-key" ? sessionStorage : localStorage;
  const saved = storage.getItem("frugal." + id);
  if (saved !== null && !autotest) $(id).value = saved;
  $(id).addEventListener("change", () => storage.setItem("frugal." + id, $(id).value));
}
$("api-key").addEventListener("change", () => loadModel());
if (autotest) {
  if (params.has("temperature")) $("temperature").value = params.get("temperature");
  if (params.has("max_tokens")) $("max-tokens").value = params.get("max_tokens");
}

function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  div.scrollIntoView({block: "end"});
  return div;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").hidden = !busy;
  document.body.dataset.state = busy ? "streaming" : "idle";
}

async function loadModel() {
  const mine = ++modelRequest;
  let label;
  try {
    const r = await fetch("v1/models", {headers: headers()});
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
    if (mine === modelRequest) contextSize = body.data[0].max_model_len;
    label = body.data[0].id + " · context " + body.data[0].max_model_len;
  } catch (e) {
    label = "model unknown (" + e.message + ")";
  }
  if (mine === modelRequest) $("model").textContent = label;
}

// The sampling fields of a request from the settings: an empty field is left out (the server's
// default); anything else that is not a valid value throws, and nothing is sent.
function settings() {
  const out = {};
  const temperature = $("temperature"), maxTokens = $("max-tokens");
  if (temperature.validity.badInput) throw new Error("Temperature must be a number (or empty for the default)");
  if (temperature.value.trim() !== "") out.temperature = Number(temperature.value);
  if (maxTokens.validity.badInput) throw new Error("Max tokens must be a whole number (or empty for the default)");
  if (maxTokens.value.trim() !== "") {
    const n = Number(maxTokens.value);
    if (!Number.isInteger(n) || n < 1) throw new Error("Max tokens must be a positive whole number (or empty for the default)");
    out.max_tokens = n;
  }
  return out;
}

// Gives a message that was not answered back to the input box, to edit and send again.
function restoreInput(text) {
  const typed = $("input").value;
  $("input").value = typed.trim() ? text + "\n" + typed : text;
}

// Reads server-sent events from a fetch response; calls onEvent with each parsed data payload.
// Lines may end in LF, CRLF or CR and "data:" may lack its space (the SSE specification allows
// both; proxies and other servers use them). Returns whether the stream ended with [DONE].
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await readPiece(reader);
    if (done) return false;
    // A CR at the end may be the first half of a CRLF: it waits for the next read.
    buffer = (buffer + decoder.decode(value, {stream: true})).replace(/\r\n|\r(?!$)/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5)).join("\n");
      if (data === "[DONE]") return true;
      if (data) onEvent(JSON.parse(data));
    }
  }
}

// An error response's message, the field it names (param), and the Settings field to point at
// when the fix is there. keySent: whether the request carried an API key.
async function responseError(response, keySent) {
  const body = await response.json().catch(() => null);
  const error = body && body.error ? body.error : {};
  if (response.status === 401) {
    const message = keySent ? "The API key is not valid: check it under Settings."
                            : "This server needs an API key: enter it under Settings.";
    return {message, field: "api-key"};
  }
  return {message: error.message || response.status + " " + response.statusText, code: error.code,
          param: error.param, field: error.param === "max_tokens" ? "max-tokens" : undefined};
}

// Positions kept free for the reply when Max tokens is empty, by `frugal chat`'s rule
// (generation_room: a quarter of the context); otherwise a reply near the end of the context
// was cut to a few tokens. A set Max tokens is kept free by the server's own check.
function replyRoom(sampling) {
  if (sampling.max_tokens !== undefined || !contextSize) return 0;
  return Math.max(1, Math.floor(contextSize / 4));
}

// The index in `conversation` after the turn (a user message and its reply) that starts at `start`.
function turnEnd(start) {
  let end = start + 1;
  while (end < conversation.length && conversation[end].role !== "user") end += 1;
  return end;
}

// Takes the first `count` messages out of the requests for good and marks them on the page;
// returns how many turns they were.
function leaveOut(count) {
  const left = conversation.splice(0, count);
  for (const turn of left) {
    turn.element.classList.add("dropped");
    turn.element.title = "Left out of the requests: the conversation outgrew the context";
  }
  return left.filter((turn) => turn.role === "user").length;
}

// Reads the next piece of a reply's body. A broken connection (the server died or restarted)
// is Chromium's bare "network error": say what happened.
async function readPiece(reader) {
  try {
    return await reader.read();
  } catch (e) {
    if (e.name === "TypeError") throw new Error("the connection to the server was lost");
    throw e;
  }
}

async function send(text) {
  let sampling;
  try {
    sampling = settings();
  } catch (e) {
    showError(e.message);
    restoreInput(text);
    if (autotest) finishAutotest({reply: "", finish: null, usage: null, chunks: 0, error: e.message});
    return;
  }
  showError("");
  const myChat = chat;
  const question = addMessage("user", text);
  const turn = {role: "user", content: text, element: question};
  conversation.push(turn);
  const reply = addMessage("assistant", "");
  reply.classList.add("streaming");
  setBusy(true);
  const myController = controller = new AbortController();
  let content = "", finish = null, usage = null, chunks = 0, error = null;
  // Messages at the start of `conversation` this request leaves out; they leave the history
  // only once a reply comes, so a message that fits in no way costs no turn.
  let skip = 0;
  const started = performance.now();
  // Read again with every message, beside it rather than before it (no request waits): a
  // restarted server may serve another model (the model line) or context (the room kept for
  // the replies after this one).
  loadModel();
  try {
    let room = replyRoom(sampling);
    for (;;) {
      const messages = [];
      const system = $("system").value.trim();
      if (system) messages.push({role: "system", content: system});
      messages.push(...conversation.slice(skip).map(({role, content}) => ({role, content})));
      // No "model": the server serves one, and a name read earlier is wrong after a restart
      // with another model or --alias.
      const body = {messages, stream: true, stream_options: {include_usage: true}, ...sampling};
      if (room > 0) body.reply_room = room;
      const requestHeaders = headers();
      const response = await fetch("v1/chat/completions", {
        method: "POST", headers: requestHeaders, body: JSON.stringify(body), signal: myController.signal,
      });
      if (!response.ok) {
        const e = await responseError(response, "Authorization" in requestHeaders);
        if (e.code === "context_length_exceeded" && myChat === chat) {
          // Too long for the context: leave the oldest turn out and ask again. With no turn
          // left, the message goes with what room there is (as in `frugal chat`), or fails.
          if (conversation[skip] !== turn) {
            skip = turnEnd(skip);
            continue;
          }
          if (e.param === "reply_room") {
            room = 0;
            continue;
          }
          e.message = `This message does not fit the context${skip > 0 ? " even without the earlier turns" : ""}: ` +
                      e.message;
        }
        if (e.field) $("settings").open = true;
        throw new Error(e.message);
      }
      const complete = await readEvents(response, (event) => {
        if (myChat !== chat) return;  // "New chat" was pressed: this reply is no longer shown
        if (event.error) throw new Error(event.error.message);
        if (event.usage) usage = event.usage;
        for (const choice of event.choices || []) {
          if (choice.delta && choice.delta.content) {
            content += choice.delta.content;
            chunks += 1;
            reply.textContent = content;
            reply.scrollIntoView({block: "end"});
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      });
      if (!complete && !finish) throw new Error("the connection closed before the reply was complete");
      break;
    }
  } catch (e) {
    error = e.name === "AbortError" ? "stopped" : e.message;
  }
  // "New chat" aborted this reply and cleared the page: record nothing, touch nothing.
  if (myChat !== chat) return;
  controller = null;
  setBusy(false);
  if (error && !content) {
    // Failed, or stopped before any text: the question was not answered, so it leaves the
    // history (or every later request would repeat it) and goes back to the input box; the
    // turns the request left out stay.
    const i = conversation.indexOf(turn);
    if (i >= 0) conversation.splice(i, 1);
    question.remove();
    reply.remove();
    restoreInput(text);
    if (error !== "stopped") showError(error);
    if (autotest) finishAutotest({reply: content, finish, usage, chunks, error});
    return;
  }
  // Answered, or cut short (stopped, or an error mid-reply): what arrived stays, as a reply.
  const dropped = leaveOut(skip);
  reply.classList.remove("streaming");
  conversation.push({role: "assistant", content, element: reply});
  const notes = [];
  if (dropped > 0) {
    notes.push(dropped === 1 ? "The oldest turn no longer fits the context: it was left out."
                             : `The ${dropped} oldest turns no longer fit the context: they were left out.`);
  }
  if (error && error !== "stopped") notes.push(error);
  showError(notes.join(" "));
  const seconds = (performance.now() - started) / 1000;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = (usage ? usage.completion_tokens + " tokens · " : "") + seconds.toFixed(1) + " s" +
                     (finish ? " · " + finish : "") + (error ? " · " + error : "");
  reply.appendChild(meta);
  if (autotest) finishAutotest({reply: content, finish, usage, chunks, error});
}

function finishAutotest(result) {
  $("autotest-result").textContent = JSON.stringify(result);
  document.body.dataset.state = "done";
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value;
  if (!text.trim() || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  // Enter while an input method is composing (e.g. picking a CJK candidate) is not a send.
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
// Leaving the page ends the reply on the server too: the browser may otherwise read the
// stream to its end (the connection stays open), holding a slot and its KV blocks.
window.addEventListener("pagehide", () => controller && controller.abort());
$("new-chat").addEventListener("click", () => {
  chat += 1;
  if (controller) controller.abort();
  controller = null;
  conversation.length = 0;
  $("messages").replaceChildren();
  showError("");
  setBusy(false);
});

loadModel().then(() => {
  if (controller) return;  // a message sent before the model line arrived is streaming
  setBusy(false);
  if (autotest) send(params.get("message") || "Hello");
});
