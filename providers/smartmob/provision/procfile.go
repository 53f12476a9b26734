package provision

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Command is one Procfile entry: the command line (run as `sh -c Cmd`) and the variables declared
// inline before it. Env is never nil.
type Command struct {
	Cmd string            `json:"cmd"`
	Env map[string]string `json:"env"`
}

// Procfile maps process types to their commands.
type Procfile map[string]Command

var (
	processTypeRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	varNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// logicalLine is a line after joining continuations; no is the number of its first physical line.
type logicalLine struct {
	no   int
	text string
}

// logicalLines checks the encoding and joins lines ending in a backslash with the next one: the
// backslash counts as one space and the next line's leading whitespace is dropped (smartmob RFC 1
// and 2). A leading UTF-8 byte order mark is ignored.
func logicalLines(data []byte) ([]logicalLine, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("invalid UTF-8")
	}
	s := strings.TrimPrefix(string(data), "\uFEFF")
	phys := strings.Split(s, "\n")
	var out []logicalLine
	for i := 0; i < len(phys); i++ {
		no := i + 1
		line := strings.TrimSuffix(phys[i], "\r")
		for strings.HasSuffix(line, `\`) && i+1 < len(phys) {
			i++
			line = line[:len(line)-1] + " " + strings.TrimLeft(strings.TrimSuffix(phys[i], "\r"), " \t")
		}
		if strings.HasSuffix(line, `\`) { // a continuation at the end of the file joins nothing
			line = line[:len(line)-1]
		}
		out = append(out, logicalLine{no, line})
	}
	return out, nil
}

// ParseProcfile parses a Procfile per smartmob RFC 1, with the inline-environment forms of both the
// RFC and the original implementation:
//
//	# comment (lines starting with #, after leading whitespace, and blank lines are ignored)
//	web: gunicorn \
//	     myapp:app                      → cmd "gunicorn myapp:app"
//	worker: QUEUE=urgent FOO=meh rake   → cmd "rake", env {QUEUE: urgent, FOO: meh}
//	worker: env QUEUE=urgent rake       → the same
//
// Process types are letters, digits, '_', '-' and '.'. Values may be quoted with ' or " to hold
// spaces. A line that is not a declaration, a duplicate process type or a duplicate variable is an
// error; duplicates use the original's texts (`Line 2: duplicate process type "web": already
// appears on line 1.`, `Line 1: duplicate variable "QUEUE" for process type "worker".`). All
// problems found are reported, one per line of the error text. Invalid UTF-8 is rejected.
func ParseProcfile(data []byte) (Procfile, error) {
	lines, err := logicalLines(data)
	if err != nil {
		return nil, fmt.Errorf("Procfile: %w", err)
	}
	pf := Procfile{}
	seen := map[string]int{}
	var errs []error
	for _, l := range lines {
		text := strings.TrimLeft(l.text, " \t")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		ptype, rest, ok := strings.Cut(text, ":")
		ptype = strings.TrimRight(ptype, " \t")
		rest = strings.TrimSpace(rest)
		if !ok || !processTypeRE.MatchString(ptype) || rest == "" {
			errs = append(errs, fmt.Errorf("Line %d: invalid Procfile line %q.", l.no, truncate(text, 80)))
			continue
		}
		if first, dup := seen[ptype]; dup {
			errs = append(errs, fmt.Errorf("Line %d: duplicate process type %q: already appears on line %d.", l.no, ptype, first))
			continue
		}
		seen[ptype] = l.no
		cmd, env, dupVar := splitInlineEnv(rest)
		if dupVar != "" {
			errs = append(errs, fmt.Errorf("Line %d: duplicate variable %q for process type %q.", l.no, dupVar, ptype))
			continue
		}
		pf[ptype] = Command{Cmd: cmd, Env: env}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return pf, nil
}

// splitInlineEnv strips leading VAR=value words (optionally after a literal "env" word) from a
// command. If nothing would remain of the command, the line is kept whole as the command. It
// returns the first duplicated variable name, if any.
func splitInlineEnv(rest string) (cmd string, env map[string]string, dup string) {
	env = map[string]string{}
	s := rest
	usedEnvWord := false
	if w, after, ok := cutWord(s); ok && w == "env" {
		s, usedEnvWord = after, true
	}
	for {
		name, value, after, ok := cutAssignment(s)
		if !ok {
			break
		}
		if _, exists := env[name]; exists && dup == "" {
			dup = name
		}
		env[name] = value
		s = after
	}
	s = strings.TrimSpace(s)
	if s == "" || (usedEnvWord && len(env) == 0) {
		return rest, map[string]string{}, ""
	}
	return s, env, dup
}

// cutWord returns the first whitespace-delimited word of s and what follows it.
func cutWord(s string) (word, after string, ok bool) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, "", s != ""
	}
	return s[:i], s[i:], true
}

// cutAssignment parses a leading NAME=value word (value unquoted, or in '…' or "…" with \" and \\
// escapes in the double-quoted form). It needs whitespace after the word.
func cutAssignment(s string) (name, value, after string, ok bool) {
	s = strings.TrimLeft(s, " \t")
	eq := strings.IndexByte(s, '=')
	if eq <= 0 || !varNameRE.MatchString(s[:eq]) {
		return "", "", "", false
	}
	name, v := s[:eq], s[eq+1:]
	var b strings.Builder
	i := 0
	switch {
	case strings.HasPrefix(v, "'"):
		end := strings.IndexByte(v[1:], '\'')
		if end < 0 {
			return "", "", "", false
		}
		b.WriteString(v[1 : 1+end])
		i = end + 2
	case strings.HasPrefix(v, `"`):
		i = 1
		closed := false
		for i < len(v) {
			c := v[i]
			if c == '\\' && i+1 < len(v) && (v[i+1] == '"' || v[i+1] == '\\') {
				b.WriteByte(v[i+1])
				i += 2
				continue
			}
			i++
			if c == '"' {
				closed = true
				break
			}
			b.WriteByte(c)
		}
		if !closed {
			return "", "", "", false
		}
	default:
		for i < len(v) && v[i] != ' ' && v[i] != '\t' {
			i++
		}
		b.WriteString(v[:i])
	}
	rest := v[i:]
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return "", "", "", false
	}
	return name, b.String(), rest, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
