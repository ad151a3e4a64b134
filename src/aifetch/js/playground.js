// The playground page: pick a model, chat, watch the answer stream, stop it. Everything it
// calls is on this gateway (paths are relative, so a gateway mounted under a prefix works),
// and the key stays in this tab's sessionStorage, never in the URL.
import {
  AbortError,
  HTTPError,
  IncompleteStreamError,
  NetworkError,
  StreamError,
  TimeoutError,
  aifetch,
  readChat,
} from "./aifetch.js";

const KEY_STORE = "aifetch.playground.key";
const $ = (id) => document.getElementById(id);
const ui = {
  key: $("key"), model: $("model"), models: $("models"), reload: $("reload"), system: $("system"),
  temperature: $("temperature"), temperatureValue: $("temperature-value"), maxTokens: $("max-tokens"),
  newChat: $("new-chat"), turns: $("turns"), error: $("error"), metrics: $("metrics"), ask: $("ask"),
  prompt: $("prompt"), send: $("send"), stop: $("stop"), status: $("status"),
  ttft: $("m-ttft"), tps: $("m-tps"), usage: $("m-usage"), timing: $("m-timing"),
};

let history = []; // the finished turns: {role, content}
let running = null; // the AbortController of the call in flight

const url = (path) => new URL(path, location.href).href;

function headers() {
  const key = ui.key.value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

// ------------------------------------------------------------------ errors, readable

const HINTS = {
  401: "Enter this gateway's key in “Gateway key”.",
  403: "This key may not use that model: pick another one.",
  404: "Pick a model from the list.",
  413: "The conversation is too long for this gateway: start a new chat.",
};

function explain(err) {
  if (err instanceof HTTPError) {
    let hint = HINTS[err.status] ?? "";
    if (err.status === 429) hint = err.retryAfter !== null ? `Rate limited: try again in ${Math.ceil(err.retryAfter)} s.` : "Rate limited: wait a little and try again.";
    else if (err.status >= 500) hint = "The gateway or the model behind it failed; trying again may work.";
    // A proxy's HTML error page is shown as its text, not its markup.
    const detail = (err.providerMessage ?? "").replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
    return { title: `${err.status} ${err.statusText}`, detail, hint };
  }
  if (err instanceof StreamError) {
    return { title: "The model failed mid-answer", detail: err.providerMessage ?? "", hint: "The answer above is incomplete." };
  }
  if (err instanceof IncompleteStreamError) {
    return { title: "The stream was cut off", detail: "It ended before the model finished.", hint: "The answer above is incomplete." };
  }
  if (err instanceof TimeoutError) return { title: "No answer in time", detail: err.message, hint: "" };
  if (err instanceof NetworkError) return { title: "Could not reach the gateway", detail: err.message, hint: "Is it still running?" };
  return { title: "Something went wrong", detail: String(err?.message ?? err), hint: "" };
}

function showError(err) {
  const { title, detail, hint } = explain(err);
  ui.error.replaceChildren(
    Object.assign(document.createElement("strong"), { textContent: title }),
    ...[detail, hint].filter(Boolean).map((text) => Object.assign(document.createElement("p"), { textContent: text })),
  );
  ui.error.hidden = false;
}

// ------------------------------------------------------------------ models

// The model this page put in the field itself: a list that comes later may replace that
// one, never a name the user typed (the list loads while they type).
let pickedModel = "";

async function loadModels() {
  ui.error.hidden = true;
  ui.model.placeholder = "loading…";
  try {
    const response = await aifetch(url("v1/models"), { headers: headers(), timeout: { total: 15000 } });
    const ids = (await response.json()).data.map((m) => m.id).sort();
    ui.models.replaceChildren(...ids.map((id) => Object.assign(document.createElement("option"), { value: id })));
    const typed = ui.model.value.trim() !== "" && ui.model.value !== pickedModel;
    if (!typed && !ids.includes(ui.model.value)) ui.model.value = pickedModel = ids[0] ?? "";
    ui.model.placeholder = ids.length ? "a model name" : "no models";
  } catch (err) {
    ui.model.placeholder = "type a model name";
    showError(err);
  }
}

// ------------------------------------------------------------------ one turn

function addTurn(role, text) {
  const item = document.createElement("li");
  item.className = role;
  const body = Object.assign(document.createElement("div"), { className: "text", textContent: text });
  item.append(Object.assign(document.createElement("span"), { className: "who", textContent: role === "user" ? "You" : ui.model.value }), body);
  ui.turns.append(item);
  item.scrollIntoView({ block: "end" });
  return body;
}

function setRunning(controller) {
  running = controller;
  ui.send.disabled = Boolean(controller);
  ui.stop.disabled = !controller;
  document.body.classList.toggle("busy", Boolean(controller));
}

// "gateway;dur=0.41, upstream;dur=12.3" -> "gateway 0.4 ms · upstream 12.3 ms"
function serverTiming(value) {
  if (!value) return "–";
  return value
    .split(",")
    .map((entry) => {
      const [name, ...params] = entry.trim().split(";");
      const dur = params.map((p) => p.trim()).find((p) => p.startsWith("dur="));
      return dur ? `${name} ${Number(dur.slice(4)).toFixed(1)} ms` : name;
    })
    .join(" · ");
}

function body(prompt) {
  const messages = [];
  const system = ui.system.value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history, { role: "user", content: prompt });
  const request = { model: ui.model.value.trim(), messages, stream: true, stream_options: { include_usage: true } };
  request.temperature = Number(ui.temperature.value);
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  if (maxTokens > 0) request.max_tokens = maxTokens;
  return request;
}

async function send(prompt) {
  ui.error.hidden = true;
  for (const dd of [ui.ttft, ui.tps, ui.usage, ui.timing]) dd.textContent = "–";
  ui.metrics.hidden = false;
  const request = body(prompt);
  addTurn("user", prompt);
  const answer = addTurn("assistant", "");
  answer.parentElement.classList.add("streaming");
  const controller = new AbortController();
  setRunning(controller);
  ui.status.textContent = "Waiting for the first token…";
  const started = performance.now();
  let first = 0;
  let pieces = 0;
  let text = "";
  try {
    const response = await aifetch(url("v1/chat/completions"), {
      method: "POST",
      headers: headers(),
      json: request,
      signal: controller.signal,
      timeout: { firstByte: 300_000, idle: 120_000 },
    });
    ui.timing.textContent = serverTiming(response.headers.get("server-timing"));
    const stream = readChat(response);
    for await (const piece of stream.textDeltas()) {
      if (!first) {
        first = performance.now();
        ui.ttft.textContent = `${Math.round(first - started)} ms`;
        ui.status.textContent = "Streaming…";
      }
      pieces++;
      text += piece;
      answer.textContent = text;
      const seconds = (performance.now() - first) / 1000;
      if (seconds > 0.2) ui.tps.textContent = `≈ ${(pieces / seconds).toFixed(1)}`;
    }
    const final = await stream.final();
    const usage = final.usage;
    const seconds = first ? (performance.now() - first) / 1000 : 0;
    if (usage) {
      ui.usage.textContent = `${usage.prompt_tokens} in · ${usage.completion_tokens} out · ${usage.total_tokens} total`;
      if (seconds > 0) ui.tps.textContent = (usage.completion_tokens / seconds).toFixed(1);
    } else if (seconds > 0) {
      ui.tps.textContent = `≈ ${(pieces / seconds).toFixed(1)}`;
    }
    if (!first) ui.ttft.textContent = `${Math.round(performance.now() - started)} ms`;
    history.push({ role: "user", content: prompt }, { role: "assistant", content: final.choices[0]?.message.content ?? "" });
    ui.status.textContent = `Done (${final.choices[0]?.finish_reason ?? "no finish reason"})`;
  } catch (err) {
    if (err instanceof AbortError) {
      ui.status.textContent = "Stopped";
      answer.parentElement.classList.add("stopped");
    } else {
      ui.status.textContent = "Failed";
      if (text) answer.parentElement.classList.add("failed"); // a cut answer is marked so
      else ui.metrics.hidden = true; // nothing was answered: no numbers to show
      showError(err);
    }
    if (!text) answer.parentElement.classList.add("empty");
  } finally {
    answer.parentElement.classList.remove("streaming");
    setRunning(null);
  }
}

// ------------------------------------------------------------------ wiring

ui.key.value = sessionStorage.getItem(KEY_STORE) ?? "";
ui.key.addEventListener("change", () => {
  sessionStorage.setItem(KEY_STORE, ui.key.value.trim());
  loadModels();
});
ui.reload.addEventListener("click", loadModels);
$("settings").addEventListener("submit", (event) => event.preventDefault());
ui.temperature.addEventListener("input", () => (ui.temperatureValue.textContent = ui.temperature.value));
ui.newChat.addEventListener("click", () => {
  history = [];
  ui.turns.replaceChildren();
  ui.error.hidden = true;
  ui.metrics.hidden = true;
  ui.status.textContent = "Ready";
});
ui.stop.addEventListener("click", () => running?.abort("stopped by the user"));
ui.ask.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = ui.prompt.value.trim();
  if (!prompt || running) return;
  if (!ui.model.value.trim()) {
    showError(new Error("Choose a model first."));
    return;
  }
  ui.prompt.value = "";
  send(prompt);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) ui.ask.requestSubmit();
});
document.getElementById("where").textContent = `Try the models served by ${location.host}. Answers stream as they are written.`;
loadModels();
