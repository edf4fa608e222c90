// @microsoft/microsoft-graph-client through the daemon's Graph proxy: no token in Node at all; the daemon
// attaches it. Node's built-in fetch (undici) ignores `agent`, so the calls go through node-fetch v2 with an
// http.Agent whose connections are the daemon's Unix socket.
import http from "node:http";
import net from "node:net";
import path from "node:path";
import fetch from "node-fetch";
import { Client, PageIterator, RetryHandler } from "@microsoft/microsoft-graph-client";

const SOCKET =
  process.env.GRAPHBROKER_SOCKET || path.join(process.env.XDG_RUNTIME_DIR, "graphbroker", "graphbroker.sock");

class SocketAgent extends http.Agent {
  createConnection() {
    return net.createConnection({ path: SOCKET });
  }
}
const agent = new SocketAgent({ keepAlive: true });

// The last middleware: sends the request over the socket. The SDK parses only https:// links, so it joins the
// proxy's http://localhost/graph/… nextLink onto its base URL; what follows the last "/graph/" is the call.
const overTheSocket = {
  async execute(context) {
    const url = String(context.request);
    const call = url.slice(url.lastIndexOf("/graph/"));
    const headers = { ...context.options.headers, "X-Graphbroker-Scopes": "User.Read Mail.Read" };
    context.response = await fetch(`http://localhost${call}`, { ...context.options, headers, agent });
  },
};
const retry = new RetryHandler(); // the daemon passes Graph's 429s back; the SDK waits and retries
retry.setNext(overTheSocket);

const client = Client.initWithMiddleware({ middleware: retry, baseUrl: "http://localhost/graph" });

const me = await client.api("/me").get();
console.log(`me: ${me.userPrincipalName}`);

const first = await client.api("/me/messages").top(2).get();
const subjects = [];
await new PageIterator(client, first, (message) => subjects.push(message.subject) > 0).iterate();
console.log(`messages: ${subjects.join(", ")}`);
