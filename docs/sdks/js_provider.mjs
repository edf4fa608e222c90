// An AuthenticationProvider for @microsoft/microsoft-graph-client that asks the daemon for each token over the
// socket (node:http speaks to a Unix socket with `socketPath`; no other package needed).
import http from "node:http";
import path from "node:path";

const SOCKET =
  process.env.GRAPHBROKER_SOCKET || path.join(process.env.XDG_RUNTIME_DIR, "graphbroker", "graphbroker.sock");

export class GraphbrokerAuthProvider {
  constructor({ scopes = ["User.Read"], profile, socket = SOCKET } = {}) {
    Object.assign(this, { scopes, profile, socket });
  }

  // The SDK calls this before each request to a Graph host over https; the daemon caches and refreshes.
  getAccessToken() {
    const query = new URLSearchParams({ scopes: this.scopes.join(" ") });
    if (this.profile) query.set("profile", this.profile);
    return new Promise((resolve, reject) => {
      const request = http.get({ socketPath: this.socket, path: `/v1/token?${query}` }, (answer) => {
        let text = "";
        answer.setEncoding("utf8");
        answer.on("data", (piece) => (text += piece));
        answer.on("end", () => {
          const body = JSON.parse(text);
          if (answer.statusCode === 200) resolve(body.access_token);
          // signin_required, invalid_scopes, …: the daemon's message says what to do.
          else reject(new Error(`graphbroker: ${body.error.code}: ${body.error.message}`));
        });
      });
      request.on("error", reject);
    });
  }
}

// Usage:
//   import { Client, PageIterator } from "@microsoft/microsoft-graph-client";
//   const client = Client.initWithMiddleware({ authProvider: new GraphbrokerAuthProvider({ scopes: ["Mail.Read"] }) });
//   const me = await client.api("/me").get();
