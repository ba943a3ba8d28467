package bench

// mergePhases joins the rounds of one target's phase into one result:
// counts add up, latency distributions merge exactly (HDR histograms),
// rates are over the summed time, and the timelines follow each other.
func mergePhases(parts []*PhaseResult) *PhaseResult {
	if len(parts) == 1 {
		return parts[0]
	}
	first := parts[0]
	m := &PhaseResult{Mode: first.Mode, Connections: first.Connections, TargetRate: first.TargetRate,
		OK: map[string]int64{}, Errors: map[string]int64{}, hist: newHistogram()}
	var cpu CPU
	var srv ServerStats
	haveCPU, haveSrv := true, true
	var srvReqs float64
	for _, p := range parts {
		m.hist.Merge(p.hist)
		if p.lag != nil {
			if m.lag == nil {
				m.lag = newHistogram()
			}
			m.lag.Merge(p.lag)
		}
		for _, pt := range p.Timeline {
			pt.Second += m.Seconds
			m.Timeline = append(m.Timeline, pt)
		}
		m.Seconds += p.Seconds
		m.Requests += p.Requests
		m.committed += p.committed
		m.Late += p.Late
		for k, n := range p.OK {
			m.OK[k] += n
		}
		for k, n := range p.Errors {
			m.Errors[k] += n
		}
		if len(m.ErrorSamples) < 5 {
			m.ErrorSamples = append(m.ErrorSamples, p.ErrorSamples...)
		}
		if p.CPU == nil {
			haveCPU = false
		} else {
			// Weighted by time: cores × seconds add up.
			w := p.Seconds
			cpu.Server += p.CPU.Server * w
			cpu.Client += p.CPU.Client * w
			cpu.Other += p.CPU.Other * w
			cpu.IRQ += p.CPU.IRQ * w
			cpu.Idle += p.CPU.Idle * w
			cpu.IOWait += p.CPU.IOWait * w
			cpu.Steal += p.CPU.Steal * w
		}
		if p.Server == nil {
			haveSrv = false
		} else {
			// Means weighted by what they are means of.
			s, n, r := p.Server, float64(p.Server.Commits), float64(p.Requests)
			srv.Commits += s.Commits
			srv.EntriesPerCommit += s.EntriesPerCommit * n
			srv.CommitMs += s.CommitMs * n
			srv.PolicyCallMs += s.PolicyCallMs * r
			srv.HandlerMs += s.HandlerMs * r
			srv.WriteStalls += s.WriteStalls
			srv.WriteStallMs += s.WriteStallMs
			srv.SlowCommits += s.SlowCommits
			srv.SlowRequests += s.SlowRequests
			srv.Wakeups += s.Wakeups
			srv.WakeupsLate += s.WakeupsLate
			srv.WakeupBoundMs = max(srv.WakeupBoundMs, s.WakeupBoundMs)
			srvReqs += r
		}
	}
	if m.Seconds > 0 {
		m.ReqPerSec = float64(m.Requests) / m.Seconds
		m.CommittedPerSec = float64(m.committed) / m.Seconds
	}
	m.Latency = summarize(m.hist)
	if m.lag != nil {
		l := summarize(m.lag)
		m.SendLag = &l
	}
	m.Percentiles = percentileCurve(m.hist)
	if len(m.ErrorSamples) > 5 {
		m.ErrorSamples = m.ErrorSamples[:5]
	}
	if haveCPU && m.Seconds > 0 {
		for _, f := range []*float64{&cpu.Server, &cpu.Client, &cpu.Other, &cpu.IRQ, &cpu.Idle, &cpu.IOWait, &cpu.Steal} {
			*f /= m.Seconds
		}
		m.CPU = &cpu
		m.setPerCore()
	}
	if haveSrv {
		if srv.Commits > 0 {
			srv.EntriesPerCommit /= float64(srv.Commits)
			srv.CommitMs /= float64(srv.Commits)
		}
		if srvReqs > 0 {
			srv.PolicyCallMs /= srvReqs
			srv.HandlerMs /= srvReqs
		}
		m.Server = &srv
	}
	return m
}
