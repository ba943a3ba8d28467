// Command v2024 is the policy module of region 371600, version v2024. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o build/policies/371600/v2024.wasm ./plugins/regions/371600/v2024
package main

import (
	"medgate/plugins/policy/r371600"
	"medgate/plugins/sdk"
)

func init() { sdk.Register(r371600.V2024) }

func main() {}
