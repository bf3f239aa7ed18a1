import { ChatKit, useChatKit } from "@openai/chatkit-react";

const API = "http://localhost:8000"; // this backend

export function Chat({ getToken }: { getToken: () => Promise<string> }) {
  const { control } = useChatKit({
    api: {
      url: `${API}/chatkit`,
      domainKey: "local-dev", // ChatKit checks it against OpenAI's allowlist off localhost
      // ChatKit calls this for every request: keep its headers, add the caller's token.
      fetch: async (input, init) => {
        const headers = new Headers(init?.headers);
        headers.set("Authorization", `Bearer ${await getToken()}`);
        return fetch(input, { ...init, headers });
      },
      uploadStrategy: { type: "two_phase" },
    },
    composer: { attachments: { enabled: true } },
    onError: ({ error }) => console.error("ChatKit:", error),
  });
  return <ChatKit control={control} style={{ display: "block", height: 600, width: 400 }} />;
}
