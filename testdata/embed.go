// Package testdata embeds the reference world (world/): the demo data and
// policy effective dates that `serve` runs on when given no --world. The
// policy modules themselves are built by `make policies`.
package testdata

import "embed"

// World is the reference world; open it with fs.Sub(World, "world").
//
//go:embed world
var World embed.FS
