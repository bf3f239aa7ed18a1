// The playground: ChatKit (loaded from OpenAI's CDN by index.html) pointed at this server.
// Option names follow the types of npm's @openai/chatkit (ChatKitOptions in types/index.d.ts).

const chat = document.getElementById("chat");
const field = (id) => document.getElementById(id);
const config = await (await fetch("/playground/config.json")).json();
const { identity } = config;

// Start-screen prompts that show off the tools. The fake model calls a tool when a message is
// `/tool_name {"arg": ...}`; a real model understands plain words.
const PROMPTS =
  config.model === "fake"
    ? [
        { label: "Add a task", prompt: '/add_task {"title": "Try the playground"}', icon: "check-circle" },
        { label: "Show my tasks", prompt: "/list_tasks", icon: "notebook" },
        { label: "Who am I?", prompt: "/get_current_user", icon: "profile" },
        { label: "Dark theme", prompt: '/switch_theme {"theme": "dark"}', icon: "lucide:moon" },
      ]
    : [
        { label: "Add a task", prompt: "Add a task: try the playground", icon: "check-circle" },
        { label: "Show my tasks", prompt: "Show me my tasks", icon: "notebook" },
        { label: "Who am I?", prompt: "Who am I, as far as you know?", icon: "profile" },
        { label: "Dark theme", prompt: "Switch to the dark theme", icon: "lucide:moon" },
      ];

let theme = "light";

function showStatus(text, isError = false) {
  const status = field("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ---- Identity: whatever this server accepts (config.json says which) ----

field("user-field").hidden = !identity.userHeader;
field("token-field").hidden = !identity.bearer;
field("domain-key-field").hidden = !config.domainKeyRequired;
field("apply").hidden = !(identity.userHeader || identity.bearer);
if (!identity.userHeader && !identity.bearer) {
  showStatus(
    "This server accepts no identity a browser page can send: configure AUTH_JWKS_URL or " +
      "AUTH_JWT_SECRET, or AUTH_TRUST_USER_HEADERS=true in development.",
    true,
  );
} else if (identity.tokenUrl) {
  field("token").placeholder = `or signed in at ${new URL(identity.tokenUrl).origin}`;
}

let cachedToken = null; // { token, expires } from the token endpoint

function expiryOf(token) {
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(payload)).exp * 1000;
}

async function bearerToken() {
  const pasted = field("token").value.trim();
  if (pasted || !identity.tokenUrl) return pasted;
  if (!cachedToken || cachedToken.expires - Date.now() < 60_000) {
    // e.g. Better Auth's GET /api/auth/token: the session cookie in, `{ token }` out.
    const response = await fetch(identity.tokenUrl, { credentials: "include" });
    if (!response.ok) {
      const origin = new URL(identity.tokenUrl).origin;
      throw new Error(`The token endpoint answered ${response.status}: sign in at ${origin}.`);
    }
    const { token } = await response.json();
    cachedToken = { token, expires: expiryOf(token) };
  }
  return cachedToken.token;
}

// ChatKit calls this for every request to /chatkit; the headers it was given are kept.
async function chatkitFetch(input, init) {
  const headers = new Headers(init?.headers);
  const token = identity.bearer ? await bearerToken() : "";
  if (token) {
    headers.set("Authorization", `Bearer ${token}`);
  } else if (identity.userHeader) {
    headers.set("X-User-Id", field("user-id").value.trim());
  }
  if (config.domainKeyRequired) {
    headers.set("X-ChatKit-Domain-Key", field("domain-key").value.trim());
  }
  return fetch(input, { ...init, headers });
}

// ---- Client tools: the agent's switch_theme runs here ----

async function onClientTool({ name, params }) {
  if (name === "switch_theme" && (params.theme === "light" || params.theme === "dark")) {
    applyTheme(params.theme);
    return { theme };
  }
  throw new Error(`This page has no client tool named ${name}`);
}

// ---- Answers that finish in the background (docs/turns.md) ----
// A reload mid-answer does not stop it: the page reopens the thread, follows the running turn
// through the re-attach stream, and asks ChatKit to fetch the thread once the turn has ended.

const THREAD_KEY = "playground.thread";
const initialThread = sessionStorage.getItem(THREAD_KEY);
let following = null;
let responding = false; // this page's own stream is under way: nothing to follow

async function followTurn(threadId) {
  following?.abort();
  if (!threadId) return;
  const controller = new AbortController();
  following = controller;
  try {
    const url = `${config.apiUrl}/threads/${encodeURIComponent(threadId)}/stream`;
    const response = await chatkitFetch(url, { signal: controller.signal });
    if (!response.ok || !response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      seen += value;
      if (seen.includes('"stream.no_active_turn"')) return; // nothing runs: nothing to follow
      showStatus("Answering in the background…");
    }
    showStatus("");
    await chat.fetchUpdates(); // the whole answer, and the thread active again
  } catch (error) {
    if (error.name !== "AbortError") showStatus(String(error.message ?? error), true);
  } finally {
    if (following === controller) following = null;
  }
}

function options() {
  const { attachments } = config;
  return {
    api: {
      url: config.apiUrl,
      domainKey: config.domainKey,
      fetch: chatkitFetch,
      // The upload goes to a signed URL from attachments.create: it needs no headers.
      uploadStrategy: { type: "two_phase" },
    },
    theme: { colorScheme: theme },
    history: { enabled: true, showDelete: true, showRename: true },
    startScreen: { greeting: "What shall we try?", prompts: PROMPTS },
    composer: {
      placeholder: "Message the assistant",
      attachments: {
        enabled: attachments.maxCount > 0,
        maxSize: attachments.maxBytes,
        maxCount: attachments.maxCount,
        ...(attachments.accept ? { accept: attachments.accept } : {}),
      },
    },
    threadItemActions: { feedback: true, retry: true },
    ...(initialThread ? { initialThread } : {}),
    onClientTool,
  };
}

function applyTheme(next) {
  theme = next;
  document.documentElement.dataset.theme = next;
  chat.setOptions(options()); // setOptions replaces every option: always pass the full set
}

// ---- Start ----

const loading = setTimeout(
  () => showStatus("ChatKit's script has not loaded from cdn.platform.openai.com yet.", true),
  10_000,
);
await customElements.whenDefined("openai-chatkit");
clearTimeout(loading);

chat.addEventListener("chatkit.error", (event) => showStatus(event.detail.error.message, true));
chat.addEventListener("chatkit.response.start", () => {
  responding = true;
  showStatus("");
});
chat.addEventListener("chatkit.response.end", () => {
  responding = false;
});
chat.addEventListener("chatkit.thread.change", (event) => {
  const { threadId } = event.detail;
  if (threadId) sessionStorage.setItem(THREAD_KEY, threadId);
  else sessionStorage.removeItem(THREAD_KEY);
  if (!responding) followTurn(threadId);
});
field("identity").addEventListener("submit", (event) => {
  event.preventDefault();
  cachedToken = null;
  showStatus("");
  sessionStorage.removeItem(THREAD_KEY);
  following?.abort();
  chat.setThreadId(null); // a new chat: the last one belonged to the previous identity
});
applyTheme(theme);
followTurn(initialThread); // a reload mid-answer: the answer goes on, follow it
