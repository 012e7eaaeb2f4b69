package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// "make up" refuses URLs bazaar would refuse, in one line naming the
// variable, before it starts or installs anything.
func TestUpRefusesForeignSchemes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ env, want string }{
		{"DATABASE_URL=mysql://root@127.0.0.1:1/bazaar", `up: DATABASE_URL: scheme "mysql" is not postgres or postgresql` + "\n"},
		{"REDIS_URL=http://127.0.0.1:1/0", `up: REDIS_URL: scheme "http" is not redis or rediss` + "\n"},
	} {
		cmd := exec.Command("bash", "local/up.sh")
		cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://postgres@127.0.0.1:1/bazaar", "REDIS_URL=redis://127.0.0.1:1/0", tc.env)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, tc.env)
		require.Equal(t, 1, exit.ExitCode(), tc.env)
		require.Equal(t, tc.want, stderr.String(), tc.env)
		require.Empty(t, stdout.String(), tc.env)
	}
}
