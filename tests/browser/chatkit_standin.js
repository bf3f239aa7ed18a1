// A stand-in for ChatKit's bundle, served in the browser tests in place of
// https://cdn.platform.openai.com/deployments/chatkit/chatkit.js (which they cannot fetch).
//
// It is NOT ChatKit and says nothing about ChatKit's own UI. It checks a page's wiring: it
// defines <openai-chatkit>, records every `setOptions`, and speaks the ChatKit protocol through
// the page's own `api.fetch` (streams read to their end, two-phase or direct uploads, widget
// actions, client tools through `onClientTool`, feedback), rendering what the server streamed
// into plain DOM that the tests read and click:
//
//   [data-part=prompts] button     one per startScreen.prompts entry; sends its prompt
//   [data-part=composer]           textarea[name=message], input[name=file], button "Send"
//   [data-part=items] > li         one per thread item: data-item-id, data-item-type, its text;
//                                  widget buttons (data-action) and feedback buttons (data-kind)
//   element dataset                state (idle | busy), threadId, colorScheme, fetchedUpdates
//                                  (how many times the page called fetchUpdates)

const STATE_IDLE = "idle";

class StandInChatKit extends HTMLElement {
  constructor() {
    super();
    this.optionsHistory = [];
    this.options = null;
    this.threadId = null;
    this.items = new Map();
    this.pendingAttachments = [];
    this.running = 0;
  }

  connectedCallback() {
    // Not in the constructor: an element made by createElement (as React does) may not get
    // attributes there.
    this.dataset.state ??= STATE_IDLE;
  }

  // ---- The public methods of OpenAIChatKit (types/index.d.ts) that the pages use ----

  setOptions(options) {
    const first = this.options === null;
    this.options = options;
    if (first && options.initialThread) this.threadId = options.initialThread;
    this.optionsHistory.push(options);
    const theme = options.theme;
    this.dataset.colorScheme = (typeof theme === "string" ? theme : theme?.colorScheme) ?? "light";
    this.render();
    if (first) this.emit("chatkit.ready");
  }

  async setThreadId(threadId) {
    this.threadId = threadId;
    this.items.clear();
    this.renderItems();
  }

  async sendUserMessage({ text }) {
    await this.track(() => this.send(text));
  }

  async sendCustomAction(action, itemId) {
    await this.track(() => this.customAction(action, itemId));
  }

  async focusComposer() {}

  async fetchUpdates() {
    // Reload the thread's items, as a refresh of ChatKit's view does; counted for the tests.
    this.dataset.fetchedUpdates = String(Number(this.dataset.fetchedUpdates ?? 0) + 1);
    if (this.threadId === null) return;
    const page = await this.json({
      type: "items.list",
      params: { thread_id: this.threadId, order: "asc", limit: 100 },
    });
    this.items.clear();
    for (const item of page.data) this.items.set(item.id, item);
    this.renderItems();
  }

  // ---- The protocol, through the page's fetch ----

  get api() {
    const api = this.options.api;
    return { url: api.url, fetch: api.fetch ?? window.fetch.bind(window), upload: api.uploadStrategy };
  }

  async request(body) {
    // A Headers object, not a plain one: a fetch that spreads `init.headers` would lose it.
    const response = await this.api.fetch(this.api.url, {
      method: "POST",
      headers: new Headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      throw new Error(`${body.type} answered ${response.status}: ${await response.text()}`);
    }
    return response;
  }

  async json(body) {
    return (await this.request(body)).json();
  }

  async stream(body) {
    const response = await this.request(body);
    this.emit("chatkit.response.start");
    const toolCalls = [];
    for await (const data of sseData(response)) this.apply(JSON.parse(data), toolCalls);
    this.emit("chatkit.response.end");
    for (const call of toolCalls) {
      const result = await this.options.onClientTool({ name: call.name, params: call.arguments });
      await this.stream({
        type: "threads.add_client_tool_output",
        params: { thread_id: this.threadId, result },
      });
    }
  }

  apply(event, toolCalls) {
    switch (event.type) {
      case "thread.created":
        this.threadId = event.thread.id;
        this.dataset.threadId = event.thread.id;
        this.emit("chatkit.thread.change", { threadId: event.thread.id });
        break;
      case "thread.item.added":
      case "thread.item.done":
      case "thread.item.replaced":
        this.items.set(event.item.id, event.item);
        if (
          event.type === "thread.item.done" &&
          event.item.type === "client_tool_call" &&
          event.item.status === "pending"
        ) {
          toolCalls.push(event.item);
        }
        break;
      case "thread.item.updated": {
        const item = this.items.get(event.item_id);
        if (item && event.update.type === "assistant_message.content_part.text_delta") {
          item.content[event.update.content_index] ??= { type: "output_text", text: "" };
          item.content[event.update.content_index].text += event.update.delta;
        }
        break;
      }
      case "error":
        this.emit("chatkit.error", { error: new Error(event.message ?? event.code) });
        break;
      default:
        break;
    }
    this.renderItems();
  }

  async send(text) {
    const input = {
      content: [{ type: "input_text", text }],
      attachments: this.pendingAttachments.map((attachment) => attachment.id),
      inference_options: {},
    };
    this.pendingAttachments = [];
    this.renderAttachments();
    if (this.threadId === null) {
      await this.stream({ type: "threads.create", params: { input } });
    } else {
      await this.stream({
        type: "threads.add_user_message",
        params: { thread_id: this.threadId, input },
      });
    }
  }

  async upload(file) {
    const strategy = this.api.upload;
    const form = new FormData();
    form.append("file", file);
    let attachment;
    if (strategy?.type === "two_phase") {
      attachment = await this.json({
        type: "attachments.create",
        params: { name: file.name, size: file.size, mime_type: file.type },
      });
      // The descriptor's URL is signed: the upload is a plain request, without the app's fetch.
      const { url, method, headers } = attachment.upload_descriptor;
      const response = await fetch(url, { method, headers, body: form });
      if (!response.ok) throw new Error(`upload answered ${response.status}`);
      attachment = await response.json();
    } else if (strategy?.type === "direct") {
      const response = await this.api.fetch(strategy.uploadUrl, { method: "POST", body: form });
      if (!response.ok) throw new Error(`direct upload answered ${response.status}`);
      attachment = await response.json();
    } else {
      throw new Error("attachments need api.uploadStrategy");
    }
    this.pendingAttachments.push(attachment);
    this.renderAttachments();
  }

  async customAction(action, itemId) {
    await this.stream({
      type: "threads.custom_action",
      params: { thread_id: this.threadId, item_id: itemId, action },
    });
  }

  async feedback(itemId, kind) {
    await this.json({
      type: "items.feedback",
      params: { thread_id: this.threadId, item_ids: [itemId], kind },
    });
    this.querySelector(`li[data-item-id="${itemId}"]`).dataset.feedback = kind;
  }

  // ---- Plumbing ----

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  async track(work) {
    this.running += 1;
    this.dataset.state = "busy";
    try {
      await work();
    } catch (error) {
      this.emit("chatkit.error", { error });
      this.querySelector("[data-part=error]").textContent = String(error.message ?? error);
    } finally {
      this.running -= 1;
      if (this.running === 0) this.dataset.state = STATE_IDLE;
    }
  }

  // ---- Rendering ----

  render() {
    const options = this.options;
    this.replaceChildren();
    const prompts = this.part("div", "prompts");
    for (const prompt of options.startScreen?.prompts ?? []) {
      const button = prompts.appendChild(document.createElement("button"));
      button.textContent = prompt.label;
      button.addEventListener("click", () => this.sendUserMessage({ text: prompt.prompt }));
    }
    this.part("ol", "items");
    const composer = this.part("form", "composer");
    const message = composer.appendChild(document.createElement("textarea"));
    message.name = "message";
    if (options.composer?.attachments?.enabled) {
      const file = composer.appendChild(document.createElement("input"));
      file.type = "file";
      file.name = "file";
      file.addEventListener("change", () => {
        const [chosen] = file.files;
        if (chosen) this.track(() => this.upload(chosen));
      });
    }
    const send = composer.appendChild(document.createElement("button"));
    send.textContent = "Send";
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = message.value;
      message.value = "";
      this.sendUserMessage({ text });
    });
    this.part("p", "attachments");
    this.part("p", "error");
    this.renderItems();
  }

  part(tag, name) {
    const element = this.appendChild(document.createElement(tag));
    element.dataset.part = name;
    return element;
  }

  renderAttachments() {
    const list = this.querySelector("[data-part=attachments]");
    if (list) list.textContent = this.pendingAttachments.map((a) => a.name).join(", ");
  }

  renderItems() {
    const list = this.querySelector("[data-part=items]");
    if (!list) return;
    list.replaceChildren();
    for (const item of this.items.values()) {
      const entry = list.appendChild(document.createElement("li"));
      entry.dataset.itemId = item.id;
      entry.dataset.itemType = item.type;
      const text = entry.appendChild(document.createElement("span"));
      text.textContent = itemText(item);
      if (item.type === "widget") {
        for (const button of widgetButtons(item.widget)) {
          const element = entry.appendChild(document.createElement("button"));
          element.textContent = button.label;
          element.dataset.action = button.onClickAction.type;
          element.addEventListener("click", () =>
            this.sendCustomAction(button.onClickAction, item.id),
          );
        }
      }
      if (item.type === "assistant_message" && this.options.threadItemActions?.feedback) {
        for (const kind of ["positive", "negative"]) {
          const element = entry.appendChild(document.createElement("button"));
          element.textContent = kind === "positive" ? "👍" : "👎";
          element.dataset.kind = kind;
          element.addEventListener("click", () => this.track(() => this.feedback(item.id, kind)));
        }
      }
    }
  }
}

// The `data:` payload of each event of a server-sent event stream, as the events arrive.
async function* sseData(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let partial = "";
  let data = [];
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    const lines = (partial + chunk.value).split("\n");
    partial = lines.pop();
    for (const line of lines) {
      if (line.startsWith("data: ")) {
        data.push(line.slice(6));
      } else if (line === "" && data.length > 0) {
        yield data.join("\n");
        data = [];
      }
    }
  }
}

function itemText(item) {
  switch (item.type) {
    case "user_message":
    case "assistant_message":
      return item.content.map((part) => part.text ?? "").join("");
    case "widget":
      return item.copy_text ?? "";
    case "client_tool_call":
      return `${item.name}(${JSON.stringify(item.arguments)}) ${item.status}`;
    default:
      return "";
  }
}

function* widgetButtons(node) {
  if (node === null || typeof node !== "object") return;
  if (node.type === "Button" && node.onClickAction) yield node;
  for (const child of node.children ?? []) yield* widgetButtons(child);
}

customElements.define("openai-chatkit", StandInChatKit);
