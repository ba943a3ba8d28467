package gateway

import (
	_ "embed"

	"github.com/valyala/fasthttp"
)

// OpenAPI is the gateway's OpenAPI 3 description (openapi.yaml), served at
// GET /openapi.yaml. openapi_test.go keeps it true: every route is in it
// and nothing else is, and real answers match its schemas.
//
//go:embed openapi.yaml
var OpenAPI []byte

func init() {
	registerRoutes(Route{Method: "GET", Pattern: "/openapi.yaml", Handle: func(_ *Server, ctx *fasthttp.RequestCtx, _ Principal, _ []string) error {
		ctx.SetContentType("application/yaml")
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBody(OpenAPI)
		return nil
	}})
}
