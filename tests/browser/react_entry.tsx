// The React page of tests/browser/test_snippets.py: the docs' snippets, composed as the docs say.
import { createRoot } from "react-dom/client";
import { bearerToken } from "../../docs/snippets/bearer-token";
import { Chat } from "../../docs/snippets/Chat";
import { DirectUploadChat } from "../../docs/snippets/DirectUploadChat";

const root = createRoot(document.getElementById("root")!);
if (new URLSearchParams(location.search).get("snippet") === "direct") {
  root.render(<DirectUploadChat />);
} else {
  root.render(<Chat getToken={bearerToken} />);
}
