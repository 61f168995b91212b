/* calc-jail: the lab's way into a scenario run's confinement, in one small exec.
 *
 * The lab starts every program under test as
 *     calc-jail --net-ns N -- bwrap ... -- calc-jail --uid U --limit ... -- PROGRAM ARGS
 * The outer call enters the run's network namespace (and, rootless, the user namespace that owns
 * it); bubblewrap then makes the pid and mount namespaces; the inner call sets the resource
 * limits, leaves root for an unprivileged uid with no capabilities left to regain, and execs
 * the program. util-linux's nsenter, prlimit and setpriv did the same in three execs of larger
 * programs, which cost more CPU than bubblewrap itself at a class's hundreds of starts a minute.
 *
 * Where no namespace can be made (a container's default seccomp profile) the lab runs it alone:
 *     calc-jail --uid U --chdir SCRATCH --limit ... -- PROGRAM ARGS
 * and, once the run is over and before anything is reported,
 *     calc-jail --kill-uid U [--kill-uid U2 ...]
 * which kills every process of those uids and checks that none is left.
 *
 * Exit status: the program's, or 125 when the jail cannot be set up (with a message on stderr),
 * 126 when the program cannot be executed, 127 when it is not found (as env(1) does).
 * --kill-uid: 0 once no process of the uids is left, 125 when some still are (named on stderr). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_JAIL = 125, EXIT_CANNOT_EXEC = 126, EXIT_NOT_FOUND = 127 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: calc-jail [--user-ns PATH] [--net-ns PATH] [--chdir DIR] [--uid N]\n"
          "                 [--limit RESOURCE=VALUE]... [--die-with-parent] -- PROGRAM [ARG...]\n"
          "       calc-jail --kill-uid N [--kill-uid N]...\n"
          "\n"
          "Runs PROGRAM inside the namespaces named (the files /proc/PID/ns/user and\n"
          "/proc/PID/ns/net of a process in them; the user namespace is entered first), with\n"
          "resource limits, as an unprivileged uid (gid the same, no supplementary groups,\n"
          "no inheritable, ambient or bounding-set capabilities, no-new-privs).\n"
          "  --limit as=BYTES|cpu=SECONDS|nproc=N|nofile=N|fsize=BYTES|core=BYTES\n"
          "                 soft and hard limit (cpu: hard one second above, so that SIGXCPU\n"
          "                 comes before SIGKILL); may be repeated\n"
          "  --die-with-parent  PROGRAM gets SIGKILL when the process that started calc-jail\n"
          "                 ends (as bubblewrap's option; for programs run without it)\n"
          "  --kill-uid N     kill every process of uid N (as root) and check that none is\n"
          "                 left; exit 0 then, 125 when some survive\n"
          "Exit status: PROGRAM's; 125 jail setup failed, 126 cannot execute, 127 not found.\n");
}

/* Says what failed and why (errno); -1. */
static int fail(const char *what, const char *arg) {
  fprintf(stderr, "calc-jail: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  return -1;
}

static int parse_u64(const char *s, unsigned long long *out) {
  char *end;
  errno = 0;
  if (*s < '0' || *s > '9') return -1;
  *out = strtoull(s, &end, 10);
  return errno || *end ? -1 : 0;
}

typedef struct limit {
  const char *name;
  int resource;
} limit;

static const limit LIMITS[] = {
    {"as", RLIMIT_AS},         {"cpu", RLIMIT_CPU},     {"nproc", RLIMIT_NPROC},
    {"nofile", RLIMIT_NOFILE}, {"fsize", RLIMIT_FSIZE}, {"core", RLIMIT_CORE},
};

static int set_limit(const char *spec) {
  const char *eq = strchr(spec, '=');
  unsigned long long v;
  if (!eq || parse_u64(eq + 1, &v) < 0) {
    fprintf(stderr, "calc-jail: --limit: expected RESOURCE=NUMBER, got \"%s\"\n", spec);
    return -1;
  }
  for (size_t i = 0; i < sizeof LIMITS / sizeof LIMITS[0]; i++) {
    if (strlen(LIMITS[i].name) != (size_t)(eq - spec) || strncmp(spec, LIMITS[i].name, (size_t)(eq - spec)))
      continue;
    struct rlimit rl = {(rlim_t)v, (rlim_t)v};
    if (LIMITS[i].resource == RLIMIT_CPU) rl.rlim_max = (rlim_t)v + 1;
    if (setrlimit(LIMITS[i].resource, &rl) < 0) return fail("--limit", spec);
    return 0;
  }
  fprintf(stderr, "calc-jail: --limit: unknown resource in \"%s\" (as, cpu, nproc, nofile, fsize, core)\n", spec);
  return -1;
}

static int enter(const char *path, int nstype) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("cannot open", path);
  int r = setns(fd, nstype);
  int saved = errno;
  close(fd);
  errno = saved;
  return r < 0 ? fail("cannot enter", path) : 0;
}

/* Everything root could hand down to the program goes before the uid changes: the bounding set
 * (dropping needs CAP_SETPCAP), ambient and inheritable capabilities (the change of uid clears
 * the permitted and effective ones, not these), the supplementary groups. */
static int drop_to(unsigned long long uid) {
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return fail("cannot drop capabilities", NULL);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return fail("cannot clear ambient capabilities", NULL);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) < 0) return fail("cannot read capabilities", NULL);
  data[0].inheritable = data[1].inheritable = 0;
  if (syscall(SYS_capset, &hdr, data) < 0) return fail("cannot clear inheritable capabilities", NULL);
  if (setgroups(0, NULL) < 0) return fail("cannot clear groups", NULL);
  if (setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0) return fail("cannot change gid", NULL);
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) return fail("cannot change uid", NULL);
  /* a setuid-root program (su, mount, ...) must not give root back: exec never adds privileges */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return fail("cannot set no-new-privs", NULL);
  /* a setresuid that silently left any id as it was would leave root in the jail */
  uid_t r, e, s;
  if (getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid) {
    fprintf(stderr, "calc-jail: uid did not change\n");
    return -1;
  }
  return 0;
}

/* How many processes of each of uids[0..n) are alive (not zombies), from one pass over /proc:
 * left[i] for uids[i]; the total, or -1 when /proc cannot be read. A zombie is dead: it holds no
 * memory, files or sockets, only its exit status for its parent. */
static int live_processes(const unsigned long long *uids, int n, int *left) {
  DIR *d = opendir("/proc");
  if (!d) return -1;
  memset(left, 0, sizeof *left * (size_t)n);
  int total = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%.20s/status", e->d_name);
    FILE *f = fopen(path, "re");
    if (!f) continue; /* gone meanwhile */
    int zombie = 0;
    unsigned long long real = 0;
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "State:", 6)) zombie = strchr(line, 'Z') || strchr(line, 'X');
      if (sscanf(line, "Uid: %llu", &real) == 1) break; /* State comes before Uid */
    }
    fclose(f);
    for (int i = 0; i < n && !zombie; i++)
      if (real == uids[i]) {
        left[i]++;
        total++;
      }
  }
  closedir(d);
  return total;
}

enum { KILL_ROUNDS = 500, MAX_KILL_UIDS = 64 };

/* SIGKILL to every process of `uid`, from a child that has become that uid: kill(-1) then reaches
 * exactly the processes that uid owns, in any session, process group or pid namespace, in one
 * pass of the kernel over its task list (a forking program cannot slip a child past it, and no
 * pid is reused under us). 0, or -1 when the child could not become the uid. */
static int kill_as(unsigned long long uid) {
  pid_t pid = fork();
  if (pid < 0) return fail("cannot fork", NULL);
  if (pid == 0) {
    if (setgroups(0, NULL) < 0 || setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
        setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
      _exit(1);
    kill(-1, SIGKILL); /* its result says nothing: other users' processes count as found */
    _exit(0);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "calc-jail: --kill-uid %llu: cannot become that uid to kill its processes\n", uid);
    return -1;
  }
  return 0;
}

/* Kills the processes of uids[0..n) until /proc shows none of them alive, a millisecond between
 * rounds, at most KILL_ROUNDS (a process in uninterruptible sleep dies only when its I/O ends).
 * A uid with no process costs no fork. */
static int kill_uids(const unsigned long long *uids, int n) {
  int left[MAX_KILL_UIDS];
  for (int round = 0; round < KILL_ROUNDS; round++) {
    int total = live_processes(uids, n, left);
    if (total < 0) return fail("cannot read", "/proc");
    if (total == 0) return 0;
    for (int i = 0; i < n; i++)
      if (left[i] && kill_as(uids[i]) < 0) return -1;
    if (round) nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  live_processes(uids, n, left);
  for (int i = 0; i < n; i++)
    if (left[i])
      fprintf(stderr, "calc-jail: --kill-uid %llu: %d process%s still alive after %d rounds of SIGKILL\n", uids[i],
              left[i], left[i] == 1 ? "" : "es", KILL_ROUNDS);
  return -1;
}

enum { OPT_USER_NS = 256, OPT_NET_NS, OPT_CHDIR, OPT_UID, OPT_LIMIT, OPT_KILL_UID, OPT_DIE_WITH_PARENT, OPT_HELP };
static const struct option long_opts[] = {
    {"user-ns", required_argument, 0, OPT_USER_NS}, {"net-ns", required_argument, 0, OPT_NET_NS},
    {"chdir", required_argument, 0, OPT_CHDIR},     {"uid", required_argument, 0, OPT_UID},
    {"limit", required_argument, 0, OPT_LIMIT},     {"kill-uid", required_argument, 0, OPT_KILL_UID},
    {"die-with-parent", no_argument, 0, OPT_DIE_WITH_PARENT}, {"help", no_argument, 0, OPT_HELP},
    {0, 0, 0, 0},
};

int main(int argc, char **argv) {
  const char *user_ns = NULL, *net_ns = NULL, *dir = NULL;
  const char *limits[16];
  int nlimits = 0;
  unsigned long long kill_list[MAX_KILL_UIDS];
  int nkill = 0;
  unsigned long long uid = 0;
  int have_uid = 0, die_with_parent = 0, ch;
  pid_t parent = getppid();
  /* "+": options stop at the first operand, so the program's own options are left alone */
  while ((ch = getopt_long(argc, argv, "+h", long_opts, NULL)) != -1) {
    switch (ch) {
      case OPT_USER_NS: user_ns = optarg; break;
      case OPT_NET_NS: net_ns = optarg; break;
      case OPT_CHDIR: dir = optarg; break;
      case OPT_UID:
        if (parse_u64(optarg, &uid) < 0 || uid == 0 || uid > 0xfffffffeULL) {
          fprintf(stderr, "calc-jail: --uid: expected a uid from 1 to 4294967294, got \"%s\"\n", optarg);
          return EXIT_JAIL;
        }
        have_uid = 1;
        break;
      case OPT_KILL_UID:
        if (nkill == MAX_KILL_UIDS) {
          fprintf(stderr, "calc-jail: too many --kill-uid options\n");
          return EXIT_JAIL;
        }
        /* never root's or a system account's: only the lab's own ranges are meant */
        if (parse_u64(optarg, &kill_list[nkill]) < 0 || kill_list[nkill] < 1000 || kill_list[nkill] > 0xfffffffeULL) {
          fprintf(stderr, "calc-jail: --kill-uid: expected a uid from 1000 to 4294967294, got \"%s\"\n", optarg);
          return EXIT_JAIL;
        }
        nkill++;
        break;
      case OPT_DIE_WITH_PARENT: die_with_parent = 1; break;
      case OPT_LIMIT:
        if (nlimits == (int)(sizeof limits / sizeof limits[0])) {
          fprintf(stderr, "calc-jail: too many --limit options\n");
          return EXIT_JAIL;
        }
        limits[nlimits++] = optarg;
        break;
      case 'h':
      case OPT_HELP: usage(stdout); return 0;
      default: usage(stderr); return EXIT_JAIL;
    }
  }
  if (nkill) {
    if (optind < argc || user_ns || net_ns || dir || have_uid || nlimits || die_with_parent) {
      fprintf(stderr, "calc-jail: --kill-uid goes alone\n");
      return EXIT_JAIL;
    }
    return kill_uids(kill_list, nkill) < 0 ? EXIT_JAIL : 0;
  }
  if (optind >= argc) {
    fprintf(stderr, "calc-jail: no program given\n");
    usage(stderr);
    return EXIT_JAIL;
  }
  if (user_ns && enter(user_ns, CLONE_NEWUSER) < 0) return EXIT_JAIL;
  if (net_ns && enter(net_ns, CLONE_NEWNET) < 0) return EXIT_JAIL;
  for (int i = 0; i < nlimits; i++)
    if (set_limit(limits[i]) < 0) return EXIT_JAIL;
  if (dir && chdir(dir) < 0) {
    fail("cannot change directory to", dir);
    return EXIT_JAIL;
  }
  if (have_uid && drop_to(uid) < 0) return EXIT_JAIL;
  /* set after the uid change, which clears it; a parent gone already is not waited for */
  if (die_with_parent && (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)) {
    fprintf(stderr, "calc-jail: --die-with-parent: %s\n", getppid() != parent ? "the parent has ended" : strerror(errno));
    return EXIT_JAIL;
  }
  execvp(argv[optind], argv + optind);
  int code = errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
  fail("cannot run", argv[optind]);
  return code;
}
