import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Served by the edge at /console/ (static files from console/dist). `npm run dev` proxies the
// API to the edge at LEDGERFLOW_EDGE (default: the local stack's http://127.0.0.1:8700).
const edge = process.env.LEDGERFLOW_EDGE ?? "http://127.0.0.1:8700";

export default defineConfig({
  base: "/console/",
  plugins: [react(), tailwindcss()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/v1": { target: edge, changeOrigin: true }, "/readyz": edge } },
});
