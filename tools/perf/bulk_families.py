#!/usr/bin/env python3
"""CPU per GB of a `homa compare` bulk run, per side, by kernel function family.

usage: bulk_families.py PERF_DATA COMPARE_JSON homa|tcp|udp

PERF_DATA: `perf record -a -g -e cpu-clock` over `homa compare --reps 1
--quiet --json --only <kind>-bulk` (whose output is COMPARE_JSON). Only the
samples of the benchmark process count (the process with the most samples);
CPU 0 is the client (the sender), CPU 1 the server, as `homa compare` pins
them. Each sample goes to the family of its innermost frame that matches one
(user-space samples to "user"); each family's share of a CPU's samples is
converted with that side's CPU per GB from the JSON. Prints a table and
writes PERF_DATA.fam.json. See docs/performance.md, "The sender's kernel
cost".
"""
import sys, json, subprocess, re, collections
data, js, key = sys.argv[1], sys.argv[2], sys.argv[3]
FAM = [  # (family, patterns) checked on each frame from the leaf up; first frame that matches wins
 ('copy in (user->kernel)', [r'^_copy_from_iter$', r'^copy_from_user', r'csum_and_copy_from', r'skb_copy_to_page']),
 ('copy out (kernel->user)', [r'^_copy_to_iter$', r'^simple_copy_to_iter', r'copy_to_user']),
 ('checksum', [r'csum_partial', r'^do_csum', r'skb_checksum']),
 ('page alloc', [r'alloc_pages', r'get_page_from_freelist', r'skb_page_frag_refill', r'folio_alloc', r'^rmqueue', r'clear_page']),
 ('page/skb free', [r'free_unref', r'__free_pages', r'free_pcppages', r'__folio_put', r'skb_release_data', r'skb_free_head', r'page_frag_free', r'kfree_skb', r'consume_skb', r'__put_page', r'kmem_cache_free', r'^kfree$', r'skb_attempt_defer_free', r'skb_defer_free', r'napi_consume', r'put_page']),
 ('skb/slab alloc', [r'__alloc_skb', r'kmem_cache_alloc', r'__kmalloc', r'kmalloc_reserve', r'alloc_skb', r'sock_alloc_send', r'__build_skb', r'napi_skb_cache']),
 ('GSO segmentation', [r'skb_segment', r'gso_segment', r'ufo_fragment', r'validate_xmit_skb', r'__skb_gso']),
 ('GRO', [r'gro_receive', r'gro_complete', r'napi_gro', r'gro_normal', r'dev_gro', r'udp_gro']),
 ('rx enqueue + wakeup', [r'__udp_enqueue', r'tcp_data_queue', r'sock_def_readable', r'try_to_wake_up', r'__wake_up', r'ep_poll_callback', r'tcp_queue_rcv']),
 ('scheduler/idle/futex', [r'__schedule', r'schedule', r'futex', r'do_idle', r'finish_task_switch', r'poll_schedule', r'do_sys_poll', r'do_poll', r'ep_poll', r'do_epoll']),
 ('softirq/ip/udp/tcp other', [r'net_rx_action', r'__netif_receive', r'ip_rcv', r'ip_local_deliver', r'udp_rcv', r'tcp_v4_rcv', r'tcp_ack', r'process_backlog', r'ip_finish_output', r'__dev_queue_xmit', r'loopback_xmit', r'ip_output', r'ip_send_skb', r'udp_send_skb', r'tcp_write_xmit', r'__tcp_transmit_skb', r'tcp_rcv_established', r'tcp_sendmsg', r'udp_sendmsg', r'ip_make_skb', r'__ip_append', r'udp_recvmsg', r'tcp_recvmsg', r'__skb_datagram_iter', r'__skb_recv_udp', r'skb_recv']),
 ('syscall entry/other kernel', [r'.*']),
]
FAMC = [(f, [re.compile(p) for p in ps]) for f, ps in FAM]
out = subprocess.run(['perf', 'script', '-i', data, '-F', 'comm,pid,tid,cpu,ip,sym,dso'], capture_output=True, text=True).stdout
samples = []
cur = None
for line in out.split('\n'):
    if not line.strip():
        if cur: samples.append(cur); cur = None
        continue
    m = re.match(r'^\s*(\S.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s*$', line)
    if m and not line.startswith('\t'):
        if cur: samples.append(cur)
        cur = (m.group(1), int(m.group(2)), int(m.group(4)), [])
        continue
    if cur is not None:
        p = line.strip().split(None, 1)
        if len(p) == 2:
            sym, rest = p[1].rsplit(' (', 1) if ' (' in p[1] else (p[1], '')
            cur[3].append((sym.split('+')[0], rest.rstrip(')')))
if cur: samples.append(cur)
PID = collections.Counter(s[1] for s in samples if s[1] != 0).most_common(1)[0][0]
tot = collections.Counter(); fam = collections.defaultdict(collections.Counter)
for comm, tid, cpu, frames in samples:
    if tid != PID: continue
    tot[cpu] += 1
    if not frames: fam[cpu]['?'] += 1; continue
    leaf, dso = frames[0]
    if 'kernel' not in dso:
        f = 'user: memcpy' if 'mem' in leaf and ('cpy' in leaf or 'move' in leaf) else 'user: other'
        fam[cpu][f] += 1; continue
    done = False
    for sym, d in frames:
        if 'kernel' not in d: break
        for f, pats in FAMC[:-1]:
            if any(p.search(sym) for p in pats):
                fam[cpu][f] += 1; done = True; break
        if done: break
    if not done: fam[cpu]['syscall entry/other kernel'] += 1
J = json.load(open(js))
cpu = J['medians']['cpu'][key + '_bulk_ms_per_gb']; gbps = J['medians']['bulk'][key + '_gbps']
side = {0: cpu['client'], 1: cpu['server']}
print(f'# {key}: {gbps:.2f} Gbit/s, ms/GB client {cpu["client"]:.0f} server {cpu["server"]:.0f}; samples cpu0 {tot[0]} cpu1 {tot[1]}')
fams = [f for f, _ in FAM] + ['user: memcpy', 'user: other', '?']
res = {}
for f in fams:
    row = [fam[c][f] / tot[c] * side[c] if tot[c] else 0 for c in (0, 1)]
    res[f] = row
    if row[0] + row[1] > 0.5:
        print(f'{f:30s} {row[0]:7.0f} {row[1]:7.0f}')
json.dump({'gbps': gbps, 'cpu': cpu, 'fam': res}, open(data + '.fam.json', 'w'))
