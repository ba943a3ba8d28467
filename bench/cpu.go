package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU is where the machine's CPU time went during a phase, in cores (1.0 =
// one CPU busy for the whole phase). Client and server share the machine,
// so the server's figures only mean something next to these.
type CPU struct {
	Server float64 `json:"server_cores"`
	Client float64 `json:"client_cores"`
	// Other is busy time of anything else (other processes, kernel
	// threads): interference, ideally near 0.
	Other float64 `json:"other_cores"`
	// IRQ is interrupt and softirq time, attributed to no process: mostly
	// the loopback network stack carrying the load itself.
	IRQ    float64 `json:"irq_cores"`
	Idle   float64 `json:"idle_cores"`
	IOWait float64 `json:"iowait_cores"`
	// Steal is time the hypervisor gave to other guests.
	Steal float64 `json:"steal_cores"`
}

// Used is the CPU the measurement itself used: server, client and the
// interrupt time of the traffic between them.
func (c *CPU) Used() float64 { return c.Server + c.Client + c.IRQ }

// clockTicks is USER_HZ, the unit of /proc's CPU times; 100 on every
// Linux architecture Go supports.
const clockTicks = 100

type cpuSnap struct {
	at                             time.Time
	busy, irq, idle, iowait, steal int64
	self, server                   int64
	ok                             bool
}

func readCPU(serverPid int) cpuSnap {
	s := cpuSnap{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	v := make([]int64, len(f)-1)
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice,
	// already counted in user and nice]
	s.busy = v[0] + v[1] + v[2]
	s.irq = v[5] + v[6]
	s.idle, s.iowait, s.steal = v[3], v[4], v[7]
	s.self = procCPU("self")
	if serverPid > 0 {
		s.server = procCPU(strconv.Itoa(serverPid))
	}
	s.ok = true
	return s
}

// procCPU is a process's user + system time in ticks.
func procCPU(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields start after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

func cpuBetween(a, b cpuSnap) *CPU {
	secs := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || secs <= 0 {
		return nil
	}
	cores := func(ticks int64) float64 { return float64(ticks) / clockTicks / secs }
	c := &CPU{
		Server: cores(b.server - a.server),
		Client: cores(b.self - a.self),
		IRQ:    cores(b.irq - a.irq),
		Idle:   cores(b.idle - a.idle),
		IOWait: cores(b.iowait - a.iowait),
		Steal:  cores(b.steal - a.steal),
	}
	c.Other = max(cores(b.busy-a.busy)-c.Server-c.Client, 0)
	return c
}

// WaitQuiet waits, at most limit, until the machine has been nearly idle
// (less than 0.25 cores busy outside this process) for 3 seconds in a row:
// on a machine shared with other work, each target then starts from the
// same quiet state. It returns the busy cores of the last second it saw.
func WaitQuiet(ctx context.Context, limit time.Duration) float64 {
	const quietCores, quietSeconds = 0.25, 3
	deadline := time.Now().Add(limit)
	prev := readCPU(0)
	quiet := 0
	var busy float64
	for time.Now().Before(deadline) && quiet < quietSeconds {
		select {
		case <-ctx.Done():
			return busy
		case <-time.After(time.Second):
		}
		cur := readCPU(0)
		if c := cpuBetween(prev, cur); c != nil {
			busy = c.Other
		}
		prev = cur
		if busy < quietCores {
			quiet++
		} else {
			quiet = 0
		}
	}
	return busy
}
