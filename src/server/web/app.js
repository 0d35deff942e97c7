// The chat page of `frugal serve`: keeps the conversation in the page, sends it to
// /v1/chat/completions with "stream": true and shows the reply as its server-sent events
// arrive. With ?autotest=1 it sends one message on load (?message=, ?temperature=,
// ?max_tokens=) and writes the outcome into #autotest-result, for the headless browser test.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const autotest = params.get("autotest") === "1";
const conversation = [];  // {role, content}
let controller = null;    // AbortController of the reply being streamed
let modelId = null;

for (const id of ["system", "temperature", "max-tokens", "api-key"]) {
  const saved = localStorage.getItem("frugal." + id);
  if (saved !== null && !autotest) $(id).value = saved;
  $(id).addEventListener("change", () => localStorage.setItem("frugal." + id, $(id).value));
}
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
  try {
    const r = await fetch("/v1/models", {headers: headers()});
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
    modelId = body.data[0].id;
    $("model").textContent = modelId + " · context " + body.data[0].max_model_len;
  } catch (e) {
    $("model").textContent = "model unknown (" + e.message + ")";
  }
}

// Reads server-sent events from a fetch response; calls onEvent with each parsed data payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data === "[DONE]") return;
      if (data) onEvent(JSON.parse(data));
    }
  }
}

async function send(text) {
  showError("");
  conversation.push({role: "user", content: text});
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.classList.add("streaming");
  setBusy(true);
  controller = new AbortController();
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({role: "system", content: system});
  messages.push(...conversation);
  const body = {
    messages,
    stream: true,
    stream_options: {include_usage: true},
    temperature: Number($("temperature").value),
    max_tokens: Number($("max-tokens").value),
  };
  if (modelId) body.model = modelId;
  let content = "", finish = null, usage = null, chunks = 0, error = null;
  const started = performance.now();
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const err = await response.json().catch(() => null);
      throw new Error(err && err.error ? err.error.message : response.status + " " + response.statusText);
    }
    await readEvents(response, (event) => {
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
  } catch (e) {
    error = e.name === "AbortError" ? "stopped" : e.message;
    if (e.name !== "AbortError") showError(error);
  }
  reply.classList.remove("streaming");
  if (content || !error) conversation.push({role: "assistant", content});
  const seconds = (performance.now() - started) / 1000;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = (usage ? usage.completion_tokens + " tokens · " : "") + seconds.toFixed(1) + " s" +
                     (finish ? " · " + finish : "") + (error ? " · " + error : "");
  reply.appendChild(meta);
  controller = null;
  setBusy(false);
  if (autotest) {
    $("autotest-result").textContent = JSON.stringify({reply: content, finish, usage, chunks, error});
    document.body.dataset.state = "done";
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value;
  if (!text.trim() || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("new-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation.length = 0;
  $("messages").replaceChildren();
  showError("");
});

loadModel().then(() => {
  setBusy(false);
  if (autotest) send(params.get("message") || "Hello");
});
