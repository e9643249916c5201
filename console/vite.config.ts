import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin } from "vite";

// Served by the edge at /console/ (static files from console/dist). `npm run dev` proxies the
// API to the edge at LEDGERFLOW_EDGE (default: the local stack's http://127.0.0.1:8700).
const edge = process.env.LEDGERFLOW_EDGE ?? "http://127.0.0.1:8700";

// The API reference the edge serves at /docs: swagger-ui-dist's prebuilt bundle (from the npm
// registry, pinned in package-lock.json) and our page (api-docs/), copied into dist/api-docs/ at
// build time, so nothing is fetched from a CDN when the page runs.
function apiDocs(): Plugin {
  const swagger = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  const files: [string, string][] = [
    [join(swagger, "swagger-ui-bundle.js"), "swagger-ui-bundle.js"],
    [join(swagger, "swagger-ui.css"), "swagger-ui.css"],
    ["api-docs/index.html", "index.html"],
    ["api-docs/init.js", "init.js"],
  ];
  return {
    name: "ledgerflow-api-docs",
    apply: "build",
    generateBundle() {
      for (const [from, name] of files) {
        this.emitFile({ type: "asset", fileName: `api-docs/${name}`, source: readFileSync(from) });
      }
    },
  };
}

export default defineConfig({
  base: "/console/",
  plugins: [react(), tailwindcss(), apiDocs()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/v1": { target: edge, changeOrigin: true }, "/readyz": edge } },
});
