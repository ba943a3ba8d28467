package bench

import (
	"math"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The CPU figures behind req/core-s: a process's time read from /proc in
// clock ticks is what the kernel's own accounting (getrusage, every thread
// of the process) says, and the machine's busy time grows by at least as
// much.
func TestR4ProcessCPUMatchesRusage(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	a, ru0 := readCPU(os.Getpid()), rusage()
	// Burn about 0.4 s of CPU on two threads.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 1.0
			for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
				for range 1000 {
					x = math.Sqrt(x + 1)
				}
			}
			_ = x
		}()
	}
	wg.Wait()
	b, ru1 := readCPU(os.Getpid()), rusage()
	ticks := time.Duration(b.self-a.self) * time.Second / clockTicks
	used := ru1 - ru0
	// /proc counts whole ticks: within two of them, and 10 %.
	if d := (ticks - used).Abs(); d > 20*time.Millisecond+used/10 {
		t.Errorf("/proc/self/stat says %v of CPU, getrusage %v", ticks, used)
	}
	if b.server-a.server != b.self-a.self {
		t.Errorf("the same process read as the server: %d ticks, as self: %d", b.server-a.server, b.self-a.self)
	}
	if c := cpuBetween(a, b); c == nil || c.Client <= 0 || c.Used() < c.Client {
		t.Errorf("cpuBetween: %+v", c)
	}
}
