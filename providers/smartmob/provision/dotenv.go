package provision

import (
	"errors"
	"fmt"
	"strings"
)

// ParseDotEnv parses a .env file per smartmob RFC 2: VAR=VAL lines, whitespace around '=' and at
// the end of the line ignored, '#' comment lines and blank lines skipped, a trailing backslash
// continuing the line (the backslash counts as one space, the next line's leading whitespace is
// dropped). A leading "export " is ignored. A value wholly enclosed in a matching pair of ' or " loses the quotes. A later
// assignment of the same variable wins; '#' after a value is part of the value. Lines without '=' or with an invalid variable name, and
// invalid UTF-8, are errors.
func ParseDotEnv(data []byte) (map[string]string, error) {
	lines, err := logicalLines(data)
	if err != nil {
		return nil, fmt.Errorf(".env: %w", err)
	}
	env := map[string]string{}
	var errs []error
	for _, l := range lines {
		text := strings.TrimSpace(l.text)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, value, ok := strings.Cut(text, "=")
		name = strings.TrimSpace(name)
		if n, found := strings.CutPrefix(name, "export "); found { // shell-style files
			name = strings.TrimSpace(n)
		}
		if !ok || !varNameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("Line %d: invalid .env line %q.", l.no, truncate(text, 80)))
			continue
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		env[name] = value
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return env, nil
}
