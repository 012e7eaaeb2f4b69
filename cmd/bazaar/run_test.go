package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every role but dev refuses to start without an admin token of its own,
// in one line naming the variable, before it connects to anything (the
// URLs point at ports nothing listens on).
func TestAdminTokenRequiredOutsideDev(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"serve", "work", "relay", "schedule"} {
		for _, token := range []string{"", defaultAdminToken, " " + defaultAdminToken + " "} {
			env := map[string]string{
				"DATABASE_URL":     "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable",
				"REDIS_URL":        "redis://127.0.0.1:1/0",
				"BAZAAR_SMTP_HOST": "mail.invalid", "BAZAAR_ADMIN_TOKEN": token,
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"bazaar", role}, envOf(env), &out, &errOut)
			require.Error(t, err, "%s with token %q", role, token)
			require.Contains(t, err.Error(), "BAZAAR_ADMIN_TOKEN", role)
			require.NotContains(t, err.Error(), "not reachable", role)
			require.NotContains(t, err.Error(), "\n", role)
			require.Empty(t, out.String(), "%s logged before refusing", role)
		}
	}
}
