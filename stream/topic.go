package stream

import (
	"fmt"
	"strings"
)

// Pattern is a compiled AMQP topic pattern. Topics and patterns are words
// separated by dots; in a pattern the word "*" matches exactly one word and
// "#" matches zero or more. "*" and "#" are wildcards only as whole words:
// "a*" is a literal word. Empty words are words too ("a..b" has three).
type Pattern struct {
	raw   string
	words []string
}

// CompilePattern checks and compiles a subscription pattern. It rejects an
// empty pattern and words that mix a wildcard with other characters, which
// are almost always a mistake ("order.*created").
func CompilePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf("topic pattern is empty")
	}
	p := compile(s)
	for _, w := range p.words {
		if w != "*" && w != "#" && strings.ContainsAny(w, "*#") {
			return Pattern{}, fmt.Errorf("topic pattern %q: word %q mixes a wildcard with other characters; use \"*\" or \"#\" as a whole word", s, w)
		}
	}
	return p, nil
}

func compile(s string) Pattern {
	words := strings.Split(s, ".")
	// Adjacent "#" words match exactly what one does; collapsing them keeps
	// matching linear in practice.
	out := words[:0:0]
	for _, w := range words {
		if w == "#" && len(out) > 0 && out[len(out)-1] == "#" {
			continue
		}
		out = append(out, w)
	}
	return Pattern{raw: s, words: out}
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// MatchTopic reports whether topic matches pattern with AMQP topic semantics.
func MatchTopic(pattern, topic string) bool { return compile(pattern).Match(topic) }

// Match reports whether topic matches the pattern.
func (p Pattern) Match(topic string) bool {
	t := strings.Split(topic, ".")
	w := p.words
	// Glob matching over words: "#" is a star, "*" a single-item wildcard.
	// On a mismatch, backtrack to the last "#" and let it swallow one more
	// word; only the last "#" needs remembering, as with file globs.
	ti, pi := 0, 0
	star, starT := -1, 0
	for ti < len(t) {
		switch {
		case pi < len(w) && w[pi] == "#":
			star, starT = pi, ti
			pi++
		case pi < len(w) && (w[pi] == "*" || w[pi] == t[ti]):
			pi++
			ti++
		case star >= 0:
			starT++
			ti = starT
			pi = star + 1
		default:
			return false
		}
	}
	for pi < len(w) && w[pi] == "#" {
		pi++
	}
	return pi == len(w)
}

// Domains returns the domains whose streams can carry a topic the pattern
// matches: the first word decides the domain, so a literal first word names
// one domain and a wildcard first word needs all of them.
func (p Pattern) Domains() []string {
	first := p.words[0]
	if first == "*" || first == "#" {
		return append([]string(nil), Domains...)
	}
	return []string{DomainOf(first + ".x")}
}
