// Package bench measures the gateway under realistic load: it generates a
// bench world (the reference world plus many persons), starts the real
// medgate binary as a separate process, drives it with the same fasthttp
// client in closed loop (N connections, each as fast as it can) and open
// loop (a fixed rate, latency from the intended send time), and compares it
// with two baselines run in the same way: a fasthttp hello-world server (the
// HTTP layer's limit on this machine) and the gateway with its policies
// compiled natively (the price of the wasm sandbox).
//
// It is a library with a thin command (cmd/medbench), in the style of
// pebble's bench package: Config structs and Run functions; the command only
// binds flags. Results are a JSON file, a PNG plot and a text table.
package bench
