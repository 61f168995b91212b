"""CPU time of this process and everything it starts, for the benchmarks.

getrusage(RUSAGE_CHILDREN) misses the programs a run confines: bubblewrap learns its child's
end through a pipe and never waits for it, so their CPU never reaches us.  A control group
counts every process in it, reaped or not; as root the meter moves this process into one of
its own (cgroup v2 cpu.stat, or v1 cpuacct) for as long as it is open, and says when it has to
fall back to rusage."""
import os
import resource

V2 = "/sys/fs/cgroup"
V1 = "/sys/fs/cgroup/cpuacct"


class CpuMeter:
    def __init__(self):
        self.group = None
        self.kind = "rusage (children reaped by us only)"

    def __enter__(self):
        for base, kind in ((V2, "cgroup v2"), (V1, "cgroup v1 cpuacct")):
            marker = "cgroup.controllers" if kind == "cgroup v2" else "cpuacct.usage"
            if not os.path.exists(os.path.join(base, marker)):
                continue
            home = os.path.join(base, _current(kind).lstrip("/"))
            group = os.path.join(home, f"calclab-bench-{os.getpid()}")
            try:
                os.mkdir(group)
                with open(os.path.join(group, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                if os.path.isdir(group):
                    os.rmdir(group)
                continue
            self.group, self.home, self.kind = group, home, kind
            break
        return self

    def seconds(self):
        """CPU seconds used so far by this process and its descendants."""
        if self.group is None:
            r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime
        if self.kind == "cgroup v2":
            with open(os.path.join(self.group, "cpu.stat")) as f:
                return int(dict(l.split() for l in f)["usage_usec"]) / 1e6
        with open(os.path.join(self.group, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def __exit__(self, *exc):
        if self.group is not None:
            try:
                with open(os.path.join(self.home, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
                os.rmdir(self.group)   # refused while a straggler is still in it: left behind, empty soon
            except OSError:
                pass


def _current(kind):
    """This process's group in that hierarchy, from /proc/self/cgroup."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            num, controllers, path = line.rstrip("\n").split(":", 2)
            if (kind == "cgroup v2" and num == "0") or (kind != "cgroup v2" and "cpuacct" in controllers.split(",")):
                return path
    return "/"
