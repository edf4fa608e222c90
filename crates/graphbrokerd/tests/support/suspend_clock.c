/* A suspend, as the daemon sees one: CLOCK_REALTIME and CLOCK_BOOTTIME (and their aliases; Rust's SystemTime and
 * the daemon's boot clock both read them through clock_gettime)
 * jump forward by the offset in the file named by GRAPHBROKER_SUSPEND_FILE, while CLOCK_MONOTONIC, which Linux stops
 * during suspend, stands still. libfaketime cannot do this: with FAKETIME_DONT_FAKE_MONOTONIC it leaves the boot
 * clock behind with the monotonic one.
 *
 * The file holds one little-endian int64, nanoseconds; it is mapped shared, so the test moves the clocks of a
 * running daemon by rewriting those 8 bytes. Loaded with LD_PRELOAD by tests/sleep.rs, compiled by the test
 * support (support::suspend_shim) with the system's cc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static volatile const int64_t *offset_ns;

__attribute__((constructor)) static void suspend_clock_init(void) {
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    const char *path = getenv("GRAPHBROKER_SUSPEND_FILE");
    if (path == NULL) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    void *mapped = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (mapped != MAP_FAILED) offset_ns = mapped;
}

static int moved_by_suspend(clockid_t id) {
    switch (id) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_TAI:
    case CLOCK_BOOTTIME:
    case CLOCK_BOOTTIME_ALARM:
    case CLOCK_REALTIME_ALARM:
        return 1;
    default:
        return 0;
    }
}

static void shift(struct timespec *ts) {
    int64_t offset = offset_ns ? *offset_ns : 0;
    int64_t nsec = ts->tv_nsec + offset % 1000000000;
    ts->tv_sec += offset / 1000000000 + nsec / 1000000000;
    ts->tv_nsec = nsec % 1000000000;
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000;
        ts->tv_sec -= 1;
    }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (real_clock_gettime == NULL) suspend_clock_init();
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && moved_by_suspend(id)) shift(ts);
    return rc;
}
