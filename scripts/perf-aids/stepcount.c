// Measurement aid for docs/performance.md ("The CLI's start, broken down"): runs a command under ptrace one
// instruction at a time and counts the instructions it executes in user space and how many of them are `cpuid`
// (0f a2), which in a virtual machine traps to the hypervisor. Prints the two counts to stderr.
//
//   gcc -O2 -o stepcount scripts/perf-aids/stepcount.c && ./stepcount /bin/true
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  pid_t pid = fork();
  if (pid == 0) {
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    execvp(argv[1], argv + 1);
    _exit(127);
  }
  int status;
  waitpid(pid, &status, 0);
  long steps = 0, cpuids = 0;
  for (;;) {
    struct user_regs_struct regs;
    ptrace(PTRACE_GETREGS, pid, 0, &regs);
    long word = ptrace(PTRACE_PEEKTEXT, pid, regs.rip, 0);
    if ((word & 0xffff) == 0xa20f) cpuids++;
    steps++;
    if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) < 0) break;
    if (waitpid(pid, &status, 0) < 0 || WIFEXITED(status) || WIFSIGNALED(status)) break;
  }
  fprintf(stderr, "%s: %ld instructions, %ld cpuid\n", argv[1], steps, cpuids);
  return 0;
}
