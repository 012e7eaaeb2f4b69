package stream

import (
	"fmt"
	"strings"
)

// ValidatePatterns checks topic patterns as Hub.Subscribe would, so a
// handler can refuse bad input before it commits to a response.
func ValidatePatterns(patterns []string) error {
	_, err := compilePatterns(patterns)
	return err
}

func compilePatterns(patterns []string) ([]Pattern, error) {
	out := make([]Pattern, 0, len(patterns))
	for _, s := range patterns {
		p, err := CompilePattern(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadTopic, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// PatternsWithin reports whether every event type any of patterns can
// match also matches scope, a pattern of the form "word.#" (such as
// "system.#"). It is how the API decides that a subscription asks only
// for public topics.
func PatternsWithin(patterns []string, scope string) bool {
	head, ok := strings.CutSuffix(scope, ".#")
	if !ok || strings.ContainsAny(head, ".*#") {
		return false
	}
	for _, p := range patterns {
		first, _, _ := strings.Cut(p, ".")
		if first != head {
			return false
		}
	}
	return len(patterns) > 0
}

// domainsOf returns the domains whose streams can carry an event any of
// patterns matches, in the order of Domains.
func domainsOf(patterns []Pattern) []string {
	seen := map[string]bool{}
	for _, p := range patterns {
		for _, d := range p.Domains() {
			seen[d] = true
		}
	}
	var out []string
	for _, d := range Domains {
		if seen[d] {
			out = append(out, d)
		}
	}
	return out
}
