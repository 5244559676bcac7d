#!/usr/bin/env python3
"""Where the emulated rack's processes spend their CPU and their wake-ups.

usage: rack_calls.py cpu PERF_DATA COMM[,COMM...]
       rack_calls.py wakeups PERF_DATA

cpu: PERF_DATA from `perf record -a -g -e cpu-clock` during a `homa rack`
run. Each sample of the named threads (e.g. `client-port-0,homa-server`
for Homa, `client-port-0,tokio-rt-worker` for TCP) goes to the system call
it was made in (its outermost `__x64_sys_*`/`__sys_*` frame), to "irq" if
an interrupt took it, else to "user". Prints samples per thread and class.

wakeups: PERF_DATA from `perf record -a -e
'syscalls:sys_enter_recvmsg,syscalls:sys_exit_recvmsg,syscalls:sys_enter_read,
syscalls:sys_enter_epoll_wait,syscalls:sys_enter_ppoll,syscalls:sys_enter_sendto,
syscalls:sys_enter_sendmsg'`. Cuts each thread's calls at its sleeps
(`ppoll`, or `epoll_wait` with an infinite timeout) and prints the most
common sequences per thread name: R+ a recvmsg that returned data, R- one
that returned EAGAIN, rdN a read of descriptor N, E0 a non-blocking
epoll_wait. See docs/performance.md, "Wake-ups that read nothing".
"""
import collections
import re
import subprocess
import sys


def script(data, fields):
    out = subprocess.run(['perf', 'script', '-i', data, '-F', fields],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def cpu(data, comms):
    counts = collections.Counter()
    totals = collections.Counter()
    comm, frames = None, []

    def flush():
        if comm not in comms:
            return
        cls = 'user'
        for f in reversed(frames):  # outermost first
            m = re.match(r'(?:__x64_sys_|__sys_)(\w+)', f)
            if m:
                cls = m.group(1)
                break
            if f.startswith(('asm_sysvec', 'asm_common_interrupt')):
                cls = 'irq'
                break
        else:
            if 'do_syscall_64' in frames:
                cls = 'other system call'
        counts[(comm, cls)] += 1
        totals[comm] += 1

    for line in script(data, 'comm,ip,sym') + ['']:
        if not line.strip():
            flush()
            comm, frames = None, []
        elif not line[0].isspace():
            comm, frames = line.split()[0], []
        else:
            parts = line.split()
            frames.append(parts[1] if len(parts) > 1 else '?')
    for c in comms:
        print(f'{c}: {totals[c]} samples')
        for (cc, cls), n in counts.most_common():
            if cc == c:
                print(f'  {n:7d} {100 * n / max(totals[c], 1):5.1f}%  {cls}')


def wakeups(data):
    seqs = collections.defaultdict(list)
    cur = collections.defaultdict(list)
    for line in script(data, 'comm,tid,event,trace'):
        p = line.split()
        if len(p) < 3:
            continue
        comm, tid, ev = p[0], p[1], p[2]
        if 'exit_recvmsg' in ev:
            if cur[tid]:
                cur[tid][-1] = 'R-' if p[-1] == '0xfffffffffffffff5' else 'R+'
            continue
        name = ev.split('sys_enter_')[-1].rstrip(':')
        if name == 'read':
            name = 'rd' + str(int(p[4].rstrip(','), 16))
        elif name == 'epoll_wait':
            name = 'E0' if p[-1] == '0x00000000' else 'Einf'
        elif name == 'ppoll':
            name = 'P'
        cur[tid].append(name)
        if name in ('Einf', 'P'):
            seqs[comm].append(' '.join(cur[tid]))
            cur[tid] = []
    for comm, s in seqs.items():
        calls = collections.Counter(x for q in s for x in q.split())
        print(f'{comm}: {len(s)} wake-ups; ' +
              ', '.join(f'{k} {v}' for k, v in sorted(calls.items())))
        for q, n in collections.Counter(s).most_common(10):
            print(f'  {n:7d}  {q}')


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == 'cpu':
        cpu(sys.argv[2], sys.argv[3].split(','))
    elif len(sys.argv) == 3 and sys.argv[1] == 'wakeups':
        wakeups(sys.argv[2])
    else:
        sys.exit(__doc__)
