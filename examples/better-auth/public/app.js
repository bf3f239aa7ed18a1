// Sign up or in with Better Auth, then talk to the ChatKit backend with a Better Auth JWT.
// Plain fetch calls, no bundler: the same requests ChatKit's own `fetch` option would make.
const $ = (id) => document.getElementById(id);
const config = await (await fetch("/config.json")).json();
let threadId = null;

/** POST to a Better Auth endpoint on this origin (the session cookie comes back and goes along). */
async function authPost(path, body) {
  const response = await fetch(`/api/auth/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.message || `${path}: HTTP ${response.status}`);
  return data;
}

async function showSession() {
  const response = await fetch("/api/auth/get-session");
  const session = response.ok ? await response.json() : null;
  const user = session?.user;
  $("who").textContent = user ? `Signed in as ${user.email} (tier: ${user.tier})` : "Not signed in.";
  document.body.dataset.signedIn = String(Boolean(user));
}

/** A fresh 15-minute JWT for the session. A real app caches it until shortly before `exp`. */
async function bearerToken() {
  const response = await fetch("/api/auth/token");
  if (!response.ok) throw new Error("Sign in first.");
  return (await response.json()).token;
}

/** The `data:` events of a text/event-stream body, decoded, as they arrive. */
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

/** One ChatKit turn: threads.create the first time, then threads.add_user_message. */
async function send(text) {
  const input = { content: [{ type: "input_text", text }], attachments: [], inference_options: {} };
  const request = threadId
    ? { type: "threads.add_user_message", params: { thread_id: threadId, input } }
    : { type: "threads.create", params: { input } };
  const response = await fetch(config.chatkitUrl, {
    method: "POST",
    headers: { Authorization: `Bearer ${await bearerToken()}`, "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
  if (!response.ok) {
    const error = await response.json().catch(() => ({}));
    throw new Error(error.message || `ChatKit backend: HTTP ${response.status}`);
  }
  const turn = document.createElement("div");
  turn.className = "turn";
  const you = document.createElement("div");
  you.className = "you";
  you.textContent = `You: ${text}`;
  const answer = document.createElement("div");
  turn.append(you, answer);
  $("transcript").append(turn);

  for await (const event of sseEvents(response.body)) {
    if (event.type === "thread.created") threadId = event.thread.id;
    if (event.type === "thread.item.updated"
        && event.update.type === "assistant_message.content_part.text_delta") {
      answer.textContent += event.update.delta;
    }
    if (event.type === "thread.item.done" && event.item.type === "assistant_message") {
      answer.textContent = event.item.content.map((part) => part.text).join("");
    }
    if (event.type === "error") throw new Error(event.message || "The turn failed.");
  }
}

/** Run a form's action, showing any error under the page. */
function onSubmit(id, action) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    $("error").textContent = "";
    const form = event.currentTarget;
    try {
      await action(Object.fromEntries(new FormData(form)));
      form.reset();
    } catch (error) {
      $("error").textContent = error.message;
    }
  });
}

onSubmit("sign-up", async (fields) => {
  await authPost("sign-up/email", fields);
  await showSession();
});
onSubmit("sign-in", async (fields) => {
  await authPost("sign-in/email", fields);
  await showSession();
});
onSubmit("chat", ({ text }) => send(text));
$("sign-out").addEventListener("click", async () => {
  await authPost("sign-out", {});
  threadId = null;
  $("transcript").replaceChildren();
  await showSession();
});
$("chatkit-url").textContent = config.chatkitUrl;
await showSession();
