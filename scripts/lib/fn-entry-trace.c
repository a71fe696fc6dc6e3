/* fn-entry-trace: which functions of an executable a command enters (scripts/hot-functions.sh).
 *
 * Usage: fn-entry-trace OUT ADDRS EXE CMD [ARG...]
 *   ADDRS: the ELF addresses (hex, sorted) of EXE's function symbols. Every traced process that
 *   runs EXE (or a copy of it with the same size: podbox re-executes from a sealed memfd copy)
 *   gets an int3 on the first byte of each of them; a hit restores the byte, so each function
 *   costs one trap per process. Forks, threads and execs are followed; a process that executes
 *   anything else (nft, the pause, the container's program) is let go. The entered addresses are
 *   appended to OUT.
 * Why breakpoints rather than page residency: the kernel maps page-cache text in 64 KiB
 * fault-around windows, so resident pages say little about which code ran; single-stepping is
 * exact but 100x slower. A profiling aid: it writes into the traced processes' text (their
 * private copies) and is never part of podbox. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXPID 4194304
static uint64_t *addrs, lo, hi;
static size_t naddrs;
static unsigned char *orig, *hit;
static off_t exe_size;
static uint64_t base_of[MAXPID]; /* load address + 1 of EXE in that process; 0: not EXE */

/* Where EXE (or its copy) is loaded in process p: its mapping at file offset 0; 0 if p runs
 * another program. */
static uint64_t load_base(pid_t p) {
    char path[64], exe[4096], line[4608];
    snprintf(path, sizeof path, "/proc/%d/exe", p);
    struct stat s;
    if (stat(path, &s) || s.st_size != exe_size) return 0;
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", p);
    FILE *f = fopen(path, "r");
    uint64_t b = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, e, off;
        int pos = 0;
        if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %n", &a, &e, &off, &pos) >= 3 && pos && off == 0
            && strncmp(line + pos, exe, strlen(exe)) == 0) { b = a; break; }
    }
    if (f) fclose(f);
    return b;
}

/* Put an int3 on every function not yet entered, in p's (private) copy of the text. */
static void arm(pid_t p, uint64_t b) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", p);
    int fd = open(path, O_RDWR);
    size_t len = hi - lo;
    unsigned char *buf = malloc(len);
    if (fd < 0 || pread(fd, buf, len, b + lo) != (ssize_t)len) { perror("fn-entry-trace: reading text"); exit(1); }
    if (!orig) { orig = malloc(len); memcpy(orig, buf, len); }
    for (size_t i = 0; i < naddrs; i++) if (!hit[i]) buf[addrs[i] - lo] = 0xCC;
    if (pwrite(fd, buf, len, b + lo) != (ssize_t)len) { perror("fn-entry-trace: writing text"); exit(1); }
    close(fd);
    free(buf);
}

static long find(uint64_t v) {
    size_t a = 0, z = naddrs;
    while (a < z) { size_t m = (a + z) / 2; if (addrs[m] < v) a = m + 1; else z = m; }
    return a < naddrs && addrs[a] == v ? (long)a : -1;
}

/* A SIGTRAP in p: if it is one of our int3s, restore the byte, step back, record; 1 if ours. */
static int on_trap(pid_t p) {
    if (!base_of[p]) { uint64_t b = load_base(p); base_of[p] = b ? b + 1 : 0; }
    if (!base_of[p]) return 0;
    struct user_regs_struct r;
    ptrace(PTRACE_GETREGS, p, 0, &r);
    uint64_t a = r.rip - 1 - (base_of[p] - 1);
    long i = find(a);
    if (i < 0) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", p);
    int fd = open(path, O_RDWR);
    if (fd < 0 || pwrite(fd, &orig[a - lo], 1, r.rip - 1) != 1) { perror("fn-entry-trace: restoring"); exit(1); }
    close(fd);
    r.rip -= 1;
    ptrace(PTRACE_SETREGS, p, 0, &r);
    hit[i] = 1;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: fn-entry-trace OUT ADDRS EXE CMD [ARG...]\n"); return 2; }
    FILE *af = fopen(argv[2], "r");
    size_t cap = 1 << 16;
    unsigned long v;
    addrs = malloc(cap * sizeof *addrs);
    while (af && fscanf(af, "%lx", &v) == 1) {
        if (naddrs == cap) addrs = realloc(addrs, (cap *= 2) * sizeof *addrs);
        addrs[naddrs++] = v;
    }
    if (!naddrs) { fprintf(stderr, "fn-entry-trace: no addresses in %s\n", argv[2]); return 2; }
    lo = addrs[0];
    hi = addrs[naddrs - 1] + 1;
    hit = calloc(naddrs, 1);
    struct stat es;
    if (stat(argv[3], &es)) { perror(argv[3]); return 2; }
    exe_size = es.st_size;
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execvp(argv[4], argv + 4);
        _exit(127);
    }
    int st, rc = 0;
    waitpid(child, &st, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
           | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, child, 0, 0);
    for (;;) {
        pid_t p = waitpid(-1, &st, __WALL);
        if (p < 0) { if (errno == EINTR) continue; break; }
        if (p >= MAXPID) { ptrace(PTRACE_DETACH, p, 0, 0); continue; }
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (p == child) rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            continue;
        }
        if (!WIFSTOPPED(st)) continue;
        int sig = WSTOPSIG(st), ev = st >> 16, pass = 0;
        if (sig == SIGTRAP && ev == PTRACE_EVENT_EXEC) {
            uint64_t b = load_base(p);
            base_of[p] = b ? b + 1 : 0;
            if (!b) { ptrace(PTRACE_DETACH, p, 0, 0); continue; }
            arm(p, b);
        } else if (sig == SIGTRAP && (ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK || ev == PTRACE_EVENT_CLONE)) {
            unsigned long np;
            ptrace(PTRACE_GETEVENTMSG, p, 0, &np);
            if (np < MAXPID) base_of[np] = base_of[p];
        } else if (sig == SIGTRAP && !ev) {
            if (!on_trap(p)) pass = sig;
        } else if (sig != SIGSTOP && sig != SIGTRAP) {
            pass = sig; /* SIGSTOP: a new task's first stop */
        }
        ptrace(PTRACE_CONT, p, 0, pass);
    }
    FILE *o = fopen(argv[1], "a");
    for (size_t i = 0; i < naddrs; i++) if (hit[i]) fprintf(o, "%lx\n", (unsigned long)addrs[i]);
    fclose(o);
    return rc;
}
