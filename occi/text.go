package occi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/cmbs/cmbs/occi/model"
)

// textDoc is what an OCCI text request (text/plain body or text/occi headers)
// carries.
type textDoc struct {
	Categories []textCategory
	// Attributes are X-OCCI-Attribute values by flat name.
	Attributes map[string]any
	Links      []textLink
	Locations  []string
}

type textCategory struct {
	Term, Scheme, Class string
	Params              map[string]string
}

func (c textCategory) id() string { return c.Scheme + c.Term }

type textLink struct {
	Target     string
	Rel        string
	Self       string
	Category   string
	Attributes map[string]any
}

func (d *textDoc) empty() bool {
	return len(d.Categories) == 0 && len(d.Attributes) == 0 && len(d.Links) == 0 && len(d.Locations) == 0
}

// parseTextBody reads a text/plain rendering: one "Name: value" per line.
func parseTextBody(body []byte) (*textDoc, error) {
	doc := &textDoc{Attributes: map[string]any{}}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 64*1024), len(body)+1)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line == "OK" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, model.BadRequest("text line %d: want \"Name: value\", got %q", n, line)
		}
		if err := doc.add(strings.TrimSpace(name), strings.TrimSpace(value)); err != nil {
			return nil, model.BadRequest("text line %d: %v", n, err)
		}
	}
	return doc, nil
}

// parseTextHeaders reads a text/occi rendering from the request headers;
// values may be repeated headers or comma-joined in one.
func parseTextHeaders(h http.Header) (*textDoc, error) {
	doc := &textDoc{Attributes: map[string]any{}}
	for _, name := range []string{"Category", "X-OCCI-Attribute", "Link", "X-OCCI-Location"} {
		for _, v := range h.Values(name) {
			if err := doc.add(name, v); err != nil {
				return nil, model.BadRequest("header %s: %v", name, err)
			}
		}
	}
	return doc, nil
}

func (d *textDoc) add(name, value string) error {
	switch strings.ToLower(name) {
	case "category":
		for _, part := range splitOutsideQuotes(value, ',') {
			c, err := parseTextCategory(part)
			if err != nil {
				return err
			}
			d.Categories = append(d.Categories, c)
		}
	case "x-occi-attribute":
		for _, part := range splitOutsideQuotes(value, ',') {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				return model.BadRequest("attribute %q has no value", part)
			}
			val, err := parseTextValue(strings.TrimSpace(v))
			if err != nil {
				return err
			}
			d.Attributes[strings.TrimSpace(k)] = val
		}
	case "link":
		for _, part := range splitOutsideQuotes(value, ',') {
			l, err := parseTextLink(part)
			if err != nil {
				return err
			}
			d.Links = append(d.Links, l)
		}
	case "x-occi-location", "location":
		for _, part := range splitOutsideQuotes(value, ',') {
			if p := strings.TrimSpace(part); p != "" {
				d.Locations = append(d.Locations, p)
			}
		}
	default:
		// Other headers in a text/plain body (e.g. a copied response) are
		// not part of the OCCI rendering.
	}
	return nil
}

func parseTextCategory(s string) (textCategory, error) {
	parts := splitOutsideQuotes(s, ';')
	c := textCategory{Params: map[string]string{}}
	c.Term = strings.TrimSpace(parts[0])
	if c.Term == "" || strings.Contains(c.Term, "=") {
		return c, model.BadRequest("category %q has no term", s)
	}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return c, model.BadRequest("category parameter %q has no value", p)
		}
		val, err := unquote(strings.TrimSpace(v))
		if err != nil {
			return c, err
		}
		c.Params[strings.ToLower(strings.TrimSpace(k))] = val
	}
	c.Scheme = c.Params["scheme"]
	c.Class = strings.ToLower(c.Params["class"])
	if c.Scheme == "" {
		return c, model.BadRequest("category %s has no scheme", c.Term)
	}
	return c, nil
}

func parseTextLink(s string) (textLink, error) {
	parts := splitOutsideQuotes(s, ';')
	l := textLink{Attributes: map[string]any{}}
	t := strings.TrimSpace(parts[0])
	if !strings.HasPrefix(t, "<") || !strings.HasSuffix(t, ">") {
		return l, model.BadRequest("link %q must start with <target>", s)
	}
	l.Target = t[1 : len(t)-1]
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return l, model.BadRequest("link parameter %q has no value", p)
		}
		k = strings.TrimSpace(k)
		switch strings.ToLower(k) {
		case "rel", "self", "category":
			val, err := unquote(strings.TrimSpace(v))
			if err != nil {
				return l, err
			}
			switch strings.ToLower(k) {
			case "rel":
				l.Rel = val
			case "self":
				l.Self = val
			default:
				l.Category = val
			}
		default:
			val, err := parseTextValue(strings.TrimSpace(v))
			if err != nil {
				return l, err
			}
			l.Attributes[k] = val
		}
	}
	return l, nil
}

// parseTextValue reads an attribute value: a quoted string, a number, a
// boolean, or a JSON array/object.
func parseTextValue(v string) (any, error) {
	switch {
	case strings.HasPrefix(v, `"`):
		return unquote(v)
	case v == "true":
		return true, nil
	case v == "false":
		return false, nil
	case strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{"):
		var out any
		if err := json.Unmarshal([]byte(v), &out); err != nil {
			return nil, model.BadRequest("attribute value %s is not valid JSON: %v", v, err)
		}
		return out, nil
	}
	if numberRE.MatchString(v) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, model.BadRequest("attribute value %s is beyond the range of a number", v)
		}
		return f, nil
	}
	if v == "" {
		return nil, model.BadRequest("attribute value is empty; quote an empty string as \"\"")
	}
	return v, nil // tolerate unquoted words
}

// numberRE is what reads as a number: the text grammar's int and float
// (plain decimals, which is how numbers are rendered) and, leniently, an
// exponent. Not NaN, Inf or hexadecimal, which ParseFloat would take and
// JSON cannot hold.
var numberRE = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)

// unquote strips one level of double quotes and undoes quote's escapes:
// \n and \r stand for line breaks, \uXXXX for that code point, a backslash
// before anything else for that character (\" and \\ in particular).
// Unquoted values are returned as they are.
func unquote(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		return v, nil
	}
	if len(v) < 2 || !strings.HasSuffix(v, `"`) || escapedAt(v, len(v)-1) {
		return "", model.BadRequest("unterminated quoted string %s", v)
	}
	inner := v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\' && i+1 < len(inner):
			i++
			switch c = inner[i]; c {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 'u':
				if i+4 < len(inner) {
					if r, err := strconv.ParseUint(inner[i+1:i+5], 16, 16); err == nil {
						b.WriteRune(rune(r))
						i += 4
						continue
					}
				}
			}
		case c == '"':
			return "", model.BadRequest(`quoted string %s has a quote inside; escape it as \"`, v)
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// escapedAt tells whether the byte at i follows an odd run of backslashes.
func escapedAt(s string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// splitOutsideQuotes splits on sep where it is not inside double quotes or
// angle brackets.
func splitOutsideQuotes(s string, sep byte) []string {
	var parts []string
	inQuote, inAngle, escaped := false, false, false
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && inQuote:
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == '<' && !inQuote:
			inAngle = true
		case c == '>' && !inQuote:
			inAngle = false
		case c == sep && !inQuote && !inAngle:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	return parts
}

// quote renders a string as an OCCI quoted string; unquote reads it back.
// Besides the grammar's \" and \\, line breaks are written \n and \r and
// other control characters \u00XX (tab stays): neither a text/plain line
// nor a text/occi header can carry them raw (a Go client refuses such a
// header outright).
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case (c < 0x20 && c != '\t') || c == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

const hexDigits = "0123456789abcdef"

// textValue renders an attribute value for the text renderings. Numbers
// are plain decimals: the text grammar has no exponent, so 1e-7 renders as
// 0.0000001 and 1e21 as 1000000000000000000000.
func textValue(v any) string {
	switch t := v.(type) {
	case string:
		return quote(t)
	case nil:
		return `""`
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(t), 'f', -1, 32)
	case json.Number:
		if f, err := t.Float64(); err == nil {
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as every JSON rendering: <, > and & as they are
	_ = enc.Encode(v)
	return strings.TrimSuffix(b.String(), "\n")
}
