package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// What the hospital and region commands share to talk to a gateway.

// maxAnswer bounds how much of an answer is read: the gateway's answers to
// these commands are a few KB, and whatever else sits at --gateway must
// not make the CLI read until it runs out of memory. A variable for tests.
var maxAnswer int64 = 64 << 20

// gatewayBase checks a gateway URL before anything is sent: a URL without
// its scheme ("127.0.0.1:8080", written as --listen is) is a usage error,
// not an unreachable gateway. It returns the URL without a trailing slash.
func gatewayBase(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the value may hold a password: do not repeat it
		}
		return "", fmt.Errorf("not a URL (%v); want http://HOST:PORT", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not a gateway URL; want http://HOST:PORT or https://HOST:PORT", u.Redacted())
	}
	return strings.TrimRight(s, "/"), nil
}

// gatewayClient does not follow redirects: net/http re-sends a redirected
// POST as a GET without its body, so the answer would be another
// resource's, not the settlement's or the upload's. A 3xx is the answer.
func gatewayClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// readAnswer reads an answer whole, at most maxAnswer bytes; a 2xx answer
// must be a JSON object, as every answer of the gateway to these commands
// is: a proxy's or a portal's page answered 200 is no settlement.
func readAnswer(resp *http.Response) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return b, fmt.Errorf("reading the answer (%s): %w", resp.Status, err)
	}
	if int64(len(b)) > maxAnswer {
		return nil, fmt.Errorf("the answer (%s) is larger than %d bytes: is --gateway a medgate gateway?", resp.Status, maxAnswer)
	}
	if resp.StatusCode/100 == 2 {
		if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' || !json.Valid(t) {
			return b, fmt.Errorf("the answer (%s, Content-Type %q) is not a JSON object: is --gateway a medgate gateway?",
				resp.Status, resp.Header.Get("Content-Type"))
		}
	}
	return b, nil
}
