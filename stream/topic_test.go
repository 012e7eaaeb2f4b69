package stream

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestMatchTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"order.created", "order.created", true},
		{"order.created", "order.confirmed", false},
		{"order.created", "order.created.extra", false},
		{"order.*", "order.created", true},
		{"order.*", "order", false},
		{"order.*", "order.created.v2", false},
		{"*.created", "order.created", true},
		{"*.created", "created", false},
		{"*", "order", true},
		{"*", "", true},
		{"*", "a.b", false},
		{"user.#", "user", true},
		{"user.#", "user.registered", true},
		{"user.#", "user.a.b.c", true},
		{"user.#", "users.registered", false},
		{"user.#", "order.created", false},
		{"#", "", true},
		{"#", "anything.at.all", true},
		{"#.created", "created", true},
		{"#.created", "order.created", true},
		{"#.created", "a.b.created", true},
		{"#.created", "order.created.x", false},
		{"payment.#.failed", "payment.failed", true},
		{"payment.#.failed", "payment.card.declined.failed", true},
		{"payment.#.failed", "payment.card.succeeded", false},
		{"#.#", "a", true},
		{"#.*", "", true},
		{"#.*", "a.b", true},
		{"*.#", "a", true},
		{"*.*.#", "a", false},
		{"a.#.#.b", "a.b", true},
		{"a.#.b.#.c", "a.x.b.y.z.c", true},
		{"a.#.b.#.c", "a.x.c.b", false},
		{"#.a.#", "b.a", true},
		{"#.a.#", "b.c", false},
		{"a..b", "a..b", true},
		{"a.*.b", "a..b", true},
		{"a.#.b", "a..b", true},
		{"", "", true},
		{"", "a", false},
		{"a*", "ab", false},
		{"a*", "a*", true},
		{"order.created", "order.*", false},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, MatchTopic(tc.pattern, tc.topic), "pattern %q topic %q", tc.pattern, tc.topic)
		require.Equal(t, tc.want, refMatch(tc.pattern, tc.topic), "reference: pattern %q topic %q", tc.pattern, tc.topic)
	}
}

func TestCompilePattern(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "order.*created", "a.b#", "#x"} {
		_, err := CompilePattern(bad)
		require.Error(t, err, bad)
	}
	for _, good := range []string{"#", "*", "order.created", "user.#", "*.created.#"} {
		p, err := CompilePattern(good)
		require.NoError(t, err, good)
		require.Equal(t, good, p.String())
	}
}

func TestPatternDomains(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		want    []string
	}{
		{"order.created", []string{"order"}},
		{"user.#", []string{"user"}},
		{"invoicing.run", []string{"invoice"}},
		{"nothing.known", []string{"system"}},
		{"#", Domains},
		{"*.created", Domains},
	}
	for _, tc := range tests {
		p, err := CompilePattern(tc.pattern)
		require.NoError(t, err)
		require.Equal(t, tc.want, p.Domains(), tc.pattern)
	}
}

// refMatch is an independent AMQP topic matcher: it rewrites the pattern as a
// regular expression over the topic with a dot after every word, so that
// "#" becomes "any number of whole words".
func refMatch(pattern, topic string) bool {
	var b strings.Builder
	b.WriteString(`^`)
	for _, w := range strings.Split(pattern, ".") {
		switch w {
		case "#":
			b.WriteString(`(?:[^.]*\.)*`)
		case "*":
			b.WriteString(`[^.]*\.`)
		default:
			b.WriteString(regexp.QuoteMeta(w) + `\.`)
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String()).MatchString(topic + ".")
}

func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"#", ""},
		{"#", "a"},
		{"*", ""},
		{"a.#", "a"},
		{"#.a", "a"},
		{"a.#.b", "a.b"},
		{"a.*.#.b", "a.x.b"},
		{"#.#.a", "a"},
		{"a..b", "a..b"},
		{".", "."},
		{"*.*", "."},
		{"#.*.#", ""},
		{"a.#.#", "a.b.c"},
		{"#.b.#.d.#", "a.b.c.d.e"},
		{"*#", "x"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		// The reference works on regular expressions, which need UTF-8.
		if len(pattern) > 64 || len(topic) > 64 || !utf8.ValidString(pattern) || !utf8.ValidString(topic) {
			t.Skip()
		}
		got, want := MatchTopic(pattern, topic), refMatch(pattern, topic)
		if got != want {
			t.Fatalf("MatchTopic(%q, %q) = %v, reference says %v", pattern, topic, got, want)
		}
	})
}
