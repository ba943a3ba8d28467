# stretches.py PARSED: running stretches of goroutines over 0.5 ms, grouped
# by how they ended (state and first non-runtime frames).
import re, sys, collections
rx = re.compile(r'Time=(\d+) GoID=(\d+) (\w+)->(\w+)')
lines = open(sys.argv[1]).read().split('\n')
n = len(lines)
def stack_after(i):
    st, j = [], i + 1
    while j < n and (lines[j].startswith('\t') or lines[j].startswith('TransitionStack')):
        if lines[j].startswith('\t') and not lines[j].startswith('\t\t'):
            st.append(lines[j].strip().split(' @')[0])
        j += 1
    return st
start, longs, durs = {}, [], []
for i, line in enumerate(lines):
    if 'StateTransition' not in line:
        continue
    m = rx.search(line)
    if not m:
        continue
    t, g, a, b = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    if b == 'Running':
        start[g] = t
    elif a == 'Running' and g in start:
        d = t - start.pop(g)
        durs.append(d)
        if d > 500_000:
            longs.append((d, b, stack_after(i)))
durs.sort()
N = len(durs)
print("running stretches %d: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.2f ms" % (
    N, durs[N // 2] / 1e3, durs[int(N * .99)] / 1e3, durs[int(N * .999)] / 1e3, durs[-1] / 1e6))
print("over 0.5 ms: %d, %.1f ms in all" % (len(longs), sum(x[0] for x in longs) / 1e6))
c, cnt = collections.Counter(), collections.Counter()
for d, b, st in longs:
    fr = [f for f in st if not f.startswith(('runtime.', 'internal/'))][:3]
    key = b + ": " + " < ".join(fr)
    c[key] += d
    cnt[key] += 1
for k, v in c.most_common(12):
    print("%8.1f ms %4d  %s" % (v / 1e6, cnt[k], k[:200]))
