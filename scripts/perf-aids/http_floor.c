// http_floor: the least an HTTP/1.1 server on a Unix socket can do for http_bench, as a floor for the daemon's
// CPU per request. One thread and one epoll set, as the daemon runs (tokio's current-thread runtime): each
// readable connection is read until a request head ends, and answered with a canned 200 of SIZE bytes of body
// (default 1,500, about a token answer), keep-alive. Nothing is parsed, allocated or logged.
//
//   http_floor SOCKET_PATH [SIZE]
//
// The CPU it spends per request (utime + stime of /proc/PID/stat over a run) is what the kernel's side of a
// request costs on this machine: the read, the write, the wakeups and epoll, with no server work beside them.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 1024

static char answer[16384];
static size_t answer_len;
// Bytes of a request head seen so far per connection: how far "\r\n\r\n" has been matched.
static int matched[MAX_CONNS];

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s SOCKET_PATH [SIZE]\n", argv[0]); return 2; }
  size_t size = argc > 2 ? (size_t)atol(argv[2]) : 1500;
  int head = snprintf(answer, sizeof answer,
                      "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n\r\n", size);
  if (size + (size_t)head > sizeof answer) { fprintf(stderr, "SIZE too large\n"); return 2; }
  memset(answer + head, 'x', size);
  answer_len = (size_t)head + size;

  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[1]);
  unlink(argv[1]);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 128) < 0) { perror("listen"); return 1; }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event events[64];
  char buf[8192];
  for (;;) {
    int n = epoll_wait(ep, events, 64, -1);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == ls) {
        int c;
        while ((c = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
          if (c >= MAX_CONNS) { close(c); continue; }
          matched[c] = 0;
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      ssize_t got = recv(fd, buf, sizeof buf, 0);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        close(fd);
        continue;
      }
      static const char end[] = "\r\n\r\n";
      for (ssize_t k = 0; k < got; k++) {
        matched[fd] = buf[k] == end[matched[fd]] ? matched[fd] + 1 : (buf[k] == '\r' ? 1 : 0);
        if (matched[fd] == 4) {
          matched[fd] = 0;
          if (write(fd, answer, answer_len) != (ssize_t)answer_len) { close(fd); break; }
        }
      }
    }
  }
}
