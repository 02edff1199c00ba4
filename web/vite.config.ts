import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

// The dev server runs on the seed's port, the origin the facade's CORS and WS checks allow by
// default (FRONTEND_URL=http://localhost:4100).
export default defineConfig({
  plugins: [preact()],
  server: { port: 4100, strictPort: true },
  preview: { port: 4100, strictPort: true },
  build: {
    target: "es2022",
    sourcemap: true,
    // The first route stays small: charts, terminal and editor are lazy chunks of their own.
    chunkSizeWarningLimit: 250,
  },
});
