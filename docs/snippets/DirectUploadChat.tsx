import { ChatKit, useChatKit } from "@openai/chatkit-react";
import { chatkitFetch } from "./bearer-token";

const API = "http://localhost:8000"; // this backend

// Direct uploads go through `api.fetch` too, so each file carries the caller's token.
export function DirectUploadChat() {
  const { control } = useChatKit({
    api: {
      url: `${API}/chatkit`,
      domainKey: "local-dev",
      fetch: chatkitFetch,
      uploadStrategy: { type: "direct", uploadUrl: `${API}/chatkit/attachments` },
    },
    composer: {
      attachments: {
        enabled: true,
        maxCount: 10, // ATTACHMENT_MAX_PER_MESSAGE
        maxSize: 20 * 1024 * 1024, // ATTACHMENT_MAX_BYTES
        accept: { "image/*": [], "application/pdf": [".pdf"], "text/*": [] },
      },
    },
  });
  return <ChatKit control={control} style={{ display: "block", height: 600, width: 400 }} />;
}
