// Package conformance runs the worked examples of testdata/spec/examples
// through the reference policies natively, checks that the WebAssembly
// builds of the modules answer byte for byte what the native policies
// answer, and benchmarks a native policy call.
package conformance

import (
	"medgate/engine/abi"
	"medgate/plugins/policy/r152500"
	"medgate/plugins/policy/r370000"
	"medgate/plugins/policy/r371600"
	"medgate/plugins/sdk"
)

// Version is one reference policy version: its module path under
// plugins/regions, its effective date and its native function.
type Version struct {
	Region, Name string
	Effective    abi.Date
	Policy       sdk.Policy
}

// Versions are the reference policy versions, latest first per region.
var Versions = []Version{
	{"371600", "v2024", 20240101, r371600.V2024},
	{"371600", "v2023", 20230101, r371600.V2023},
	{"152500", "v1", 20230101, r152500.V1},
	{"370000", "v1", 20230101, r370000.V1},
}

// Pick returns the version of region in force on date.
func Pick(region string, date abi.Date) (string, sdk.Policy, bool) {
	for _, v := range Versions {
		if v.Region == region && date >= v.Effective {
			return v.Name, v.Policy, true
		}
	}
	return "", nil, false
}
