// Measurement aid for docs/performance.md ("The CLI's start, broken down"): the leanest one-shot client of
// graphbrokerd itself, in C. It connects, checks the listener's uid (SO_PEERCRED), sends graphbroker-client's
// exact request for a cached token, reads the answer to its end and prints the token. Timed with altbench beside
// `uds_floor oneshot` (the same kind of process against a C server), it shows what the daemon's answer on a fresh
// connection costs; beside graphbroker-client, what the client adds to that.
//
//   gcc -O2 -o c_client scripts/perf-aids/c_client.c && ./c_client SOCKET
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) return 3;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.uid != getuid()) return 9;
  const char *request = "GET /v1/token?scopes=User.Read&wait=0 HTTP/1.1\r\nHost: localhost\r\n"
                        "Accept: application/json\r\nConnection: close\r\n\r\n";
  if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) return 1;
  static char buf[8192];
  size_t got = 0;
  ssize_t n;
  while ((n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)n;
  buf[got] = 0;
  char *token = strstr(buf, "\"access_token\":\"");
  if (!token) return 1;
  token += strlen("\"access_token\":\"");
  char *end = strchr(token, '"');
  if (!end) return 1;
  *end = '\n';
  return write(1, token, (size_t)(end - token + 1)) < 0;
}
