// Command v2023 is the policy module of region 371600, version v2023. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o build/policies/371600/v2023.wasm ./plugins/regions/371600/v2023
package main

import (
	"medgate/plugins/policy/r371600"
	"medgate/plugins/sdk"
)

func init() { sdk.Register(r371600.V2023) }

func main() {}
