package bench

import (
	"fmt"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot draws r as a PNG: above, the latency percentile curve of every
// target and phase (x in "nines", y log scale); below, requests per second
// over each phase's time.
func Plot(path string, r *Result) error {
	lat := plot.New()
	lat.Title.Text = "Latency by percentile"
	lat.X.Label.Text = "percentile"
	lat.Y.Label.Text = "latency (ms, log scale)"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	lat.X.Tick.Marker = plot.ConstantTicks{
		{Value: 0, Label: "0%"}, {Value: 1, Label: "90%"}, {Value: 2, Label: "99%"},
		{Value: 3, Label: "99.9%"}, {Value: 4, Label: "99.99%"}, {Value: 5, Label: "99.999%"},
	}
	lat.Legend.Top = false
	lat.Legend.Left = true
	lat.Add(plotter.NewGrid())

	tput := plot.New()
	tput.Title.Text = "Throughput over time"
	tput.X.Label.Text = "seconds into the phase"
	tput.Y.Label.Text = "requests per second (log scale)"
	// The targets differ by an order of magnitude or more: log scale keeps
	// every line readable.
	tput.Y.Scale = plot.LogScale{}
	tput.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	tput.X.Min = 0
	tput.Legend.Top = true
	tput.Add(plotter.NewGrid())

	i := 0
	for _, t := range r.Targets {
		for _, p := range []*PhaseResult{t.Closed, t.Open} {
			if p == nil {
				continue
			}
			name := fmt.Sprintf("%s %s", t.Name, p.Mode)
			if p.Mode == Open {
				name = fmt.Sprintf("%s open %d/s", t.Name, p.TargetRate)
			}
			var curve plotter.XYs
			for _, pt := range p.Percentiles {
				if pt.Percentile >= 100 || pt.Ms <= 0 {
					continue // the maximum is in the table: its "nines" are infinite
				}
				curve = append(curve, plotter.XY{X: -math.Log10(1 - pt.Percentile/100), Y: pt.Ms})
			}
			var series plotter.XYs
			for _, pt := range p.Timeline {
				if pt.ReqPerSec > 0 { // a log scale has no 0
					series = append(series, plotter.XY{X: pt.Second, Y: pt.ReqPerSec})
				}
			}
			for _, add := range []struct {
				pl  *plot.Plot
				xys plotter.XYs
			}{{lat, curve}, {tput, series}} {
				if len(add.xys) == 0 {
					continue
				}
				l, err := plotter.NewLine(add.xys)
				if err != nil {
					return err
				}
				l.Color = plotutil.Color(i)
				l.Dashes = plotutil.Dashes(i % 3)
				l.Width = vg.Points(1.5)
				add.pl.Add(l)
				add.pl.Legend.Add(name, l)
			}
			i++
		}
	}

	const w, h = 10 * vg.Inch, 10 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12), PadY: vg.Points(18)}
	plots := [][]*plot.Plot{{lat}, {tput}}
	canvases := plot.Align(plots, tiles, dc)
	lat.Draw(canvases[0][0])
	tput.Draw(canvases[1][0])

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
