# sched.py PARSED: from `go tool trace -d=parsed trace.out > PARSED`, the time
# goroutines spent runnable before running (a wake-up's wait for a processor).
import re, sys
rx = re.compile(r'Time=(\d+) GoID=(\d+) (\w+)->(\w+)')
runnable, lat = {}, []
for line in open(sys.argv[1]):
    if 'StateTransition' not in line:
        continue
    m = rx.search(line)
    if not m:
        continue
    t, g, a, b = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    if b == 'Runnable':
        runnable[g] = t
    elif b == 'Running' and g in runnable:
        lat.append(t - runnable.pop(g))
lat.sort()
n = len(lat)
print("wake-ups", n)
for q in [0.5, 0.9, 0.99, 0.999]:
    print("p%g %.1f us" % (q * 100, lat[int(q * n)] / 1e3))
for th in [1e5, 1e6, 5e6, 1e7]:
    print("> %g ms: %.3f %%" % (th / 1e6, sum(1 for x in lat if x > th) / n * 100))
print("total wait %.2f s" % (sum(lat) / 1e9))
