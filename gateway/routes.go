package gateway

import (
	"bytes"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"
)

// Route is one endpoint. Pattern is a path whose segments are literal or
// "{}" (a parameter, handed to the handler in order). Role is the principal
// the endpoint is for ("" for none: no token needed); the router
// authenticates before calling the handler, so a wrong or missing token
// never reaches it.
type Route struct {
	Method  string
	Pattern string
	Role    Role
	Handle  func(s *Server, ctx *fasthttp.RequestCtx, p Principal, params []string) error
	// MaxBody bounds the request body; 0 means MaxBodyBytes.
	MaxBody int
	// Query names the query parameters the route takes. A route with a
	// role refuses any other, and one given twice (400, naming it).
	Query []string

	segs []string
}

// routes is the route table, filled by each feature file's init through
// registerRoutes; the table is read-only once the server serves.
var routes []*Route

func registerRoutes(rs ...Route) {
	for _, r := range rs {
		r := r
		r.segs = strings.Split(strings.Trim(r.Pattern, "/"), "/")
		routes = append(routes, &r)
	}
}

// Routes lists the registered endpoints (for documentation tests).
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		out[i] = *r
	}
	return out
}

func init() {
	registerRoutes(
		Route{Method: "POST", Pattern: "/v1/settlements/quote", Role: RoleHospital, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, _ []string) error {
			return s.settle(ctx, p, true)
		}},
		Route{Method: "POST", Pattern: "/v1/settlements", Role: RoleHospital, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, _ []string) error {
			return s.settle(ctx, p, false)
		}},
		Route{Method: "GET", Pattern: "/v1/settlements/{}", Role: RoleHospital, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, params []string) error {
			return s.get(ctx, p, params[0])
		}},
		Route{Method: "POST", Pattern: "/v1/settlements/{}/reversal", Role: RoleHospital, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, params []string) error {
			return s.reverse(ctx, p, params[0])
		}},
	)
}

// match finds the route for method and path (HEAD takes a GET route:
// fasthttp leaves the body out). It returns 404 when no pattern matches
// and 405 when one matches with another method. A pattern
// with fewer parameters is the more specific: /v1/settlements/quote is that
// path, not a settlement named "quote", whatever the method.
func (s *Server) match(method, path []byte, params []string) (*Route, []string, error) {
	var allowed []string
	var found *Route
	var foundParams []string
	scratch := params[:0]
	best := -1 // the fewest parameters of a pattern matching path so far
	for _, r := range routes {
		ps, ok := matchPath(r.segs, path, scratch)
		if !ok || best >= 0 && len(ps) > best {
			continue
		}
		if best < 0 || len(ps) < best {
			best, allowed, found = len(ps), allowed[:0], nil
		}
		if string(method) != r.Method && (r.Method != "GET" || string(method) != "HEAD") {
			allowed = append(allowed, r.Method)
			if r.Method == "GET" {
				allowed = append(allowed, "HEAD") // answered as GET, without the body
			}
			continue
		}
		// Later matches append past these parameters, not over them.
		found, foundParams, scratch = r, ps, ps[len(ps):]
		if best == 0 {
			break // no pattern is more specific than a literal path
		}
	}
	if found != nil {
		return found, foundParams, nil
	}
	if len(allowed) > 0 {
		return nil, nil, &Error{Status: fasthttp.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "use " + strings.Join(allowed, " or "),
			Allow: strings.Join(allowed, ", ")}
	}
	return nil, nil, notFound("no such endpoint")
}

// matchPath matches path against segs; parameters are appended to params.
// A parameter never matches an empty segment.
func matchPath(segs []string, path []byte, params []string) ([]string, bool) {
	if len(path) == 0 || path[0] != '/' {
		return nil, false
	}
	rest := path[1:]
	for i, seg := range segs {
		j := bytes.IndexByte(rest, '/')
		var part []byte
		if j < 0 {
			part, rest = rest, nil
			if i != len(segs)-1 {
				return nil, false
			}
		} else {
			part, rest = rest[:j], rest[j+1:]
			if i == len(segs)-1 {
				return nil, false
			}
		}
		if seg == "{}" {
			if len(part) == 0 {
				return nil, false
			}
			params = append(params, string(part))
		} else if string(part) != seg {
			return nil, false
		}
	}
	return params, true
}

// queryParams refuses a query parameter the endpoint does not take (names)
// and one given twice, naming it, as an unknown or repeated key of a body
// is refused: ignored, a misspelt to_seq exported the whole ledger, of two
// from_seq the first silently won, and a POST /v1/settlements?dry_run=1
// meant as a quote would settle.
func queryParams(ctx *fasthttp.RequestCtx, names ...string) error {
	var err error
	var seen uint64 // by index in names
	ctx.QueryArgs().VisitAll(func(k, _ []byte) {
		if err != nil || len(k) == 0 {
			return
		}
		i := slices.Index(names, string(k))
		switch {
		case i < 0 && len(names) == 0:
			err = badRequest("unknown_field", string(k), "unknown query parameter %q: this endpoint takes none", k)
		case i < 0:
			err = badRequest("unknown_field", string(k), "unknown query parameter %q: this endpoint takes %s", k,
				strings.Join(names, ", "))
		case seen&(1<<i) != 0:
			err = badRequest("duplicate_field", string(k), "query parameter %s appears twice", k)
		}
		seen |= 1 << max(i, 0)
	})
	return err
}
