package api

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every live event route checks its topics against the documented
// grammar before it answers: a pattern that no event type could match is
// a 400 naming the parameter.
func TestEventTopicsGrammar(t *testing.T) {
	t.Parallel()
	b := setup(t)
	routes := []struct{ path, token string }{
		{"/v1/events", ""},
		{"/v1/events", b.admin},
		{"/v1/sellers/" + b.sellerA.String() + "/events", b.keyA},
	}
	for _, r := range routes {
		for _, bad := range []string{"BAD TOPIC", "Order.created", "order..created", "order.", ".order", "order-created.#", "order.créé", "system.#,x y"} {
			res := b.do(http.MethodGet, r.path+"?topics="+url.QueryEscape(bad), r.token, nil)
			p := res.problem(http.StatusBadRequest, "invalid-parameter")
			require.Equal(t, "topics", p["errors"].([]any)[0].(map[string]any)["field"], "%s %q", r.path, bad)
		}
		// Good patterns pass the check; this server has no hub, so they
		// reach the 503 that follows it.
		for _, good := range []string{"system.#", "system.*", "system.maintenance", "#"} {
			if r.token == "" && good == "#" {
				continue
			}
			b.do(http.MethodGet, r.path+"?topics="+url.QueryEscape(good), r.token, nil).problem(http.StatusServiceUnavailable, "unavailable")
		}
	}
}
