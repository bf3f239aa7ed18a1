// Bundles react_entry.tsx (and the docs' snippets it imports) for the browser test:
//   node build.mjs <backend origin> <outfile>
// The snippets address "http://localhost:8000"; the test's server is elsewhere, so that one
// constant is replaced, and the build fails if a snippet no longer has it.
import { readFile } from "node:fs/promises";
import { build } from "esbuild";

const DOCUMENTED_ORIGIN = "http://localhost:8000";
const [origin, outfile] = process.argv.slice(2);

const retarget = {
  name: "retarget-snippets",
  setup(builder) {
    builder.onLoad({ filter: /docs[\\/]snippets[\\/].*\.tsx?$/ }, async ({ path }) => {
      const source = await readFile(path, "utf8");
      if (source.includes("const API =") && !source.includes(`"${DOCUMENTED_ORIGIN}"`)) {
        throw new Error(`${path} no longer addresses ${DOCUMENTED_ORIGIN}`);
      }
      return {
        contents: source.replaceAll(DOCUMENTED_ORIGIN, origin),
        loader: path.endsWith(".tsx") ? "tsx" : "ts",
      };
    });
  },
};

await build({
  entryPoints: [new URL("./react_entry.tsx", import.meta.url).pathname],
  bundle: true,
  format: "esm",
  jsx: "automatic",
  nodePaths: [new URL("./node_modules", import.meta.url).pathname], // for docs/snippets
  define: { "process.env.NODE_ENV": '"production"' },
  outfile,
  logLevel: "warning",
  plugins: [retarget],
});
