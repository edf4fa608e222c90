"""A stand-in Azure DevOps git server for tests/git.rs: `git http-backend` (smart HTTP) behind Basic auth on
loopback, accepting only the password in the file named by $EXPECTED_PASSWORD_FILE. Prints its port, then serves.
Each request's outcome (`ok` or `refused`) is appended to $SEEN_FILE."""
import base64
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.environ["GIT_PROJECT_ROOT"]
EXPECTED = open(os.environ["EXPECTED_PASSWORD_FILE"]).read().strip()
SEEN = os.environ["SEEN_FILE"]


def record(what):
    with open(SEEN, "a") as seen:
        seen.write(what + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def authorized(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            _user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return False
        return password == EXPECTED

    def serve(self):
        if not self.authorized():
            record("refused")
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="stand-in Azure DevOps"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        record("ok")
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(os.environ)
        env.update({
            "GIT_PROJECT_ROOT": ROOT, "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
            "PATH_INFO": path, "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": "tester", "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        })
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = serve
    do_POST = serve


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
