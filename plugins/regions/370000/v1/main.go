// Command v1 is the policy module of region 370000, version v1. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o build/policies/370000/v1.wasm ./plugins/regions/370000/v1
package main

import (
	"medgate/plugins/policy/r370000"
	"medgate/plugins/sdk"
)

func init() { sdk.Register(r370000.V1) }

func main() {}
