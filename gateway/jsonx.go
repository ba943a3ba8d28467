package gateway

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// lexer is a small, allocation-light JSON reader for the request bodies the
// gateway accepts. It reads values in place: strings without escapes are
// returned as sub-slices of the body (valid only while the body is), which
// keeps decoding off the reflection path of encoding/json and lets every
// error name the exact field (items[3].amount) that caused it.
type lexer struct {
	b       []byte
	i       int
	scratch []byte // unescaped strings
	// owned is set when b is the decoder's own copy, never modified: then
	// strings may alias it (see string).
	owned bool
	// depth is how many arrays and objects skip is inside.
	depth int
}

// maxSkipDepth bounds the nesting of a value skip consumes. No field of any
// request nests more than a few levels; without a bound, a body of 1 MiB
// of brackets made skip recurse half a million deep (hundreds of MB of
// stack for one request).
const maxSkipDepth = 64

// string returns s as a string: without copying when s is part of an owned
// b (an unescaped string), copied otherwise.
func (l *lexer) string(s []byte) string {
	if l.owned && len(s) > 0 {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
		b := uintptr(unsafe.Pointer(unsafe.SliceData(l.b)))
		if p >= b && p+uintptr(len(s)) <= b+uintptr(len(l.b)) {
			return unsafe.String(unsafe.SliceData(s), len(s))
		}
	}
	return string(s)
}

var errSyntax = errors.New("malformed JSON")

func (l *lexer) ws() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\n', '\r':
			l.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (l *lexer) peek() byte {
	l.ws()
	if l.i >= len(l.b) {
		return 0
	}
	return l.b[l.i]
}

func (l *lexer) expect(c byte) bool {
	if l.peek() != c {
		return false
	}
	l.i++
	return true
}

// object calls fn for every key of an object; fn must consume the value.
func (l *lexer) object(fn func(key []byte) error) error {
	if !l.expect('{') {
		return errSyntax
	}
	if l.expect('}') {
		return nil
	}
	for {
		if l.peek() != '"' {
			return errSyntax
		}
		key, err := l.str()
		if err != nil {
			return err
		}
		// copy: the next str() may reuse scratch
		if !l.expect(':') {
			return errSyntax
		}
		if err := fn(key); err != nil {
			return err
		}
		if l.expect(',') {
			continue
		}
		if l.expect('}') {
			return nil
		}
		return errSyntax
	}
}

// array calls fn for every element index; fn must consume the element.
func (l *lexer) array(fn func(i int) error) error {
	if !l.expect('[') {
		return errSyntax
	}
	if l.expect(']') {
		return nil
	}
	for i := 0; ; i++ {
		if err := fn(i); err != nil {
			return err
		}
		if l.expect(',') {
			continue
		}
		if l.expect(']') {
			return nil
		}
		return errSyntax
	}
}

// str reads a string. The result aliases the body or l.scratch and is valid
// until the next call of str.
func (l *lexer) str() ([]byte, error) {
	if !l.expect('"') {
		return nil, errSyntax
	}
	start := l.i
	var high byte // the OR of the string's bytes: UTF-8 is checked only if one is ≥ 0x80
	for i, b := l.i, l.b; i < len(b); i++ {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			high |= c
			continue
		}
		l.i = i
		switch c {
		case '"':
			s := b[start:i]
			l.i++
			if high >= 0x80 && !utf8.Valid(s) {
				return nil, errSyntax
			}
			return s, nil
		case '\\':
			return l.strEscaped(start)
		}
		return nil, errSyntax
	}
	l.i = len(l.b)
	return nil, errSyntax
}

func (l *lexer) strEscaped(start int) ([]byte, error) {
	out := append(l.scratch[:0], l.b[start:l.i]...)
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			l.i++
			l.scratch = out
			if !utf8.Valid(out) {
				return nil, errSyntax
			}
			return out, nil
		case c < 0x20:
			return nil, errSyntax
		case c != '\\':
			out = append(out, c)
			l.i++
			continue
		}
		l.i++
		if l.i >= len(l.b) {
			return nil, errSyntax
		}
		e := l.b[l.i]
		l.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := l.hex4()
			if !ok {
				return nil, errSyntax
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by a low one is a
				// character. A lone surrogate is refused like invalid
				// UTF-8, not replaced with U+FFFD as encoding/json does:
				// two different request_ids must never read as one.
				if r >= 0xdc00 || l.i+1 >= len(l.b) || l.b[l.i] != '\\' || l.b[l.i+1] != 'u' {
					return nil, errSyntax
				}
				l.i += 2
				r2, ok := l.hex4()
				if !ok {
					return nil, errSyntax
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return nil, errSyntax
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, errSyntax
		}
	}
	return nil, errSyntax
}

func (l *lexer) hex4() (rune, bool) {
	if l.i+4 > len(l.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(l.b[l.i:l.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	l.i += 4
	return rune(v), true
}

// boolean reads true or false.
func (l *lexer) boolean() (bool, bool) {
	l.ws()
	if hasPrefix(l.b[l.i:], "true") {
		l.i += 4
		return true, true
	}
	if hasPrefix(l.b[l.i:], "false") {
		l.i += 5
		return false, true
	}
	return false, false
}

// null consumes a null if one is next.
func (l *lexer) null() bool {
	l.ws()
	if hasPrefix(l.b[l.i:], "null") {
		l.i += 4
		return true
	}
	return false
}

// integer reads a JSON integer (no fraction, no exponent).
func (l *lexer) integer() (int64, bool) {
	l.ws()
	start := l.i
	if l.i < len(l.b) && l.b[l.i] == '-' {
		l.i++
	}
	digits := l.i
	for l.i < len(l.b) && l.b[l.i] >= '0' && l.b[l.i] <= '9' {
		l.i++
	}
	// JSON allows no leading zero (01 is not a number).
	if l.i-digits > 1 && l.b[digits] == '0' {
		l.i = start
		return 0, false
	}
	if l.i < len(l.b) && (l.b[l.i] == '.' || l.b[l.i] == 'e' || l.b[l.i] == 'E') {
		l.i = start
		return 0, false
	}
	v, err := strconv.ParseInt(string(l.b[start:l.i]), 10, 64)
	if err != nil {
		l.i = start
		return 0, false
	}
	return v, true
}

// skip consumes any value (used only to describe its kind in errors).
func (l *lexer) skip() error {
	switch c := l.peek(); {
	case c == '{' || c == '[':
		if l.depth >= maxSkipDepth {
			return badRequest("malformed_json", "", "the body nests arrays and objects more than %d deep (near byte %d)", maxSkipDepth, l.i)
		}
		l.depth++
		defer func() { l.depth-- }()
		if c == '{' {
			return l.object(func([]byte) error { return l.skip() })
		}
		return l.array(func(int) error { return l.skip() })
	case c == '"':
		_, err := l.str()
		return err
	case c == 't' || c == 'f':
		if _, ok := l.boolean(); !ok {
			return errSyntax
		}
		return nil
	case c == 'n':
		if !l.null() {
			return errSyntax
		}
		return nil
	case c == '-' || c >= '0' && c <= '9':
		start := l.i
		for l.i < len(l.b) && (l.b[l.i] == '-' || l.b[l.i] == '+' || l.b[l.i] == '.' || l.b[l.i] == 'e' || l.b[l.i] == 'E' || l.b[l.i] >= '0' && l.b[l.i] <= '9') {
			l.i++
		}
		// A number past float64's range (1e9999, 400 digits) is still a
		// number: its value is never needed, and the caller names the
		// field it does not fit.
		if _, err := strconv.ParseFloat(string(l.b[start:l.i]), 64); err != nil && !errors.Is(err, strconv.ErrRange) {
			return errSyntax
		}
		return nil
	}
	return errSyntax
}

// end reports whether only whitespace is left.
func (l *lexer) end() bool { return l.peek() == 0 && l.i >= len(l.b) }

func hasPrefix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[:len(s)]) == s
}
