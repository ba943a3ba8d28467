// Command v1 is the policy module of region 152500, version v1. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o build/policies/152500/v1.wasm ./plugins/regions/152500/v1
package main

import (
	"medgate/plugins/policy/r152500"
	"medgate/plugins/sdk"
)

func init() { sdk.Register(r152500.V1) }

func main() {}
