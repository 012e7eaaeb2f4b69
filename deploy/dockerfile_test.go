package deploy

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// No Docker engine runs where the tests do, so the Dockerfile is read rather
// than built: its builder follows go.mod's Go version, the binary is static,
// and the final image runs the binary as a non-root user.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	var (
		froms []string
		user  string
		entry string
		lines []string
	)
	// Join continuation lines so each instruction is one line.
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, rest)
			user = "" // each stage starts as root
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entry = rest
		}
	}
	require.GreaterOrEqual(t, len(froms), 2, "a multi-stage build")

	gomod, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	require.NotNil(t, m, "go.mod has no go directive")
	require.Contains(t, froms[0], "golang:"+string(m[1]), "the builder image follows go.mod's Go version")
	require.Contains(t, string(raw), "CGO_ENABLED=0", "a static binary")

	final := froms[len(froms)-1]
	require.True(t, strings.Contains(final, "distroless/static") || strings.HasPrefix(final, "scratch"), "a minimal final image: %s", final)
	require.NotEmpty(t, user, "the final stage sets USER")
	require.NotContains(t, []string{"root", "0", "0:0", "root:root"}, user, "the final stage runs as non-root")
	require.Equal(t, `["/bazaar"]`, entry)

	ignore, err := os.ReadFile("Dockerfile.dockerignore")
	require.NoError(t, err)
	for _, p := range []string{".git", ".data", "bin"} {
		require.Contains(t, strings.Fields(string(ignore)), p, "the build context leaves out %s", p)
	}
}
