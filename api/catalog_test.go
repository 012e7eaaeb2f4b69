package api

import (
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
	"github.com/bazaarhq/bazaar/workers/invoicing"
)

const catalogURL = "https://bazaar.test/asyncapi.yaml"

// catalog is asyncapi.yaml loaded for validation.
type catalog struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	compiled map[string]*jsonschema.Schema
}

// loadCatalog parses asyncapi.yaml. Its data schemas leave unknown fields
// open, as consumers must accept fields added later; here every object
// schema that lists its properties is closed, so a field the code emits
// and the catalogue does not describe fails the test.
func loadCatalog(t *testing.T) *catalog {
	t.Helper()
	raw, err := yaml.YAMLToJSON(AsyncAPISpec)
	require.NoError(t, err, "asyncapi.yaml")
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	m := doc.(map[string]any)
	require.Equal(t, "3.0.0", m["asyncapi"])
	schemas := m["components"].(map[string]any)["schemas"].(map[string]any)
	for _, s := range schemas {
		closeObjects(s)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	require.NoError(t, c.AddResource(catalogURL, m))
	return &catalog{doc: m, compiler: c, compiled: map[string]*jsonschema.Schema{}}
}

func closeObjects(s any) {
	m, ok := s.(map[string]any)
	if !ok {
		return
	}
	if props, ok := m["properties"].(map[string]any); ok {
		if _, set := m["additionalProperties"]; !set {
			m["additionalProperties"] = false
		}
		for _, p := range props {
			closeObjects(p)
		}
	}
	closeObjects(m["items"])
}

// schema compiles the schema at a JSON pointer of the catalogue.
func (c *catalog) schema(t *testing.T, pointer string) *jsonschema.Schema {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.compiled[pointer]; ok {
		return s
	}
	s, err := c.compiler.Compile(catalogURL + "#" + pointer)
	require.NoError(t, err, "compile %s", pointer)
	c.compiled[pointer] = s
	return s
}

func (c *catalog) messages() map[string]any {
	return c.doc["components"].(map[string]any)["messages"].(map[string]any)
}

// eventTypes are the event types the catalogue has a message for.
func (c *catalog) eventTypes() []string {
	var out []string
	for key, m := range c.messages() {
		if _, ok := m.(map[string]any)["x-dataschemas"]; ok {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

var urnRe = regexp.MustCompile(`^urn:bazaar:([a-z_.]+):([0-9]+)$`)

// validate checks one emitted envelope: the CloudEvents SDK must read it,
// its type must have a message whose payload it matches, and its
// dataschema must resolve, by the documented mapping, to a schema its data
// matches.
func (c *catalog) validate(t *testing.T, raw []byte) cloudevents.Event {
	t.Helper()
	ce := cloudevents.New()
	require.NoError(t, json.Unmarshal(raw, &ce), "CloudEvents SDK reads %s", raw)
	require.NoError(t, ce.Validate(), "%s", raw)
	require.Equal(t, "/bazaar", ce.Source())
	require.Equal(t, cloudevents.ApplicationJSON, ce.DataContentType())

	msg, ok := c.messages()[ce.Type()].(map[string]any)
	require.True(t, ok, "event type %s is not in asyncapi.yaml", ce.Type())
	require.Contains(t, msg["x-dataschemas"], ce.DataSchema(), "%s: dataschema not listed", ce.Type())
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	require.NoError(t, c.schema(t, "/components/messages/"+ce.Type()+"/payload").Validate(doc), "%s envelope: %s", ce.Type(), raw)

	sm := urnRe.FindStringSubmatch(ce.DataSchema())
	require.NotNil(t, sm, "dataschema %q", ce.DataSchema())
	require.Equal(t, ce.Type(), sm[1], "dataschema names another type")
	data, err := jsonschema.UnmarshalJSON(bytes.NewReader(ce.Data()))
	require.NoError(t, err)
	require.NoError(t, c.schema(t, "/components/schemas/"+sm[1]+".v"+sm[2]).Validate(data), "%s data: %s", ce.Type(), ce.Data())
	return ce
}

type nopMailer struct{}

func (nopMailer) Send(context.Context, workers.Mail) error { return nil }

// catalogBundle is an API with the relay, the workers, their consumer
// groups and invoicing: every producer of events.
type catalogBundle struct {
	*sseBundle
	w *workers.Workers
}

func catalogSetup(t *testing.T) *catalogBundle {
	t.Helper()
	ctx := context.Background()
	b := &catalogBundle{sseBundle: sseSetup(t, sseOptions{})}
	qrdb := redis.NewClient(redistest.DB(t))
	t.Cleanup(func() { _ = qrdb.Close() })
	w, err := workers.New(workers.Config{
		DB: b.db, Redis: qrdb, Mailer: nopMailer{}, Observer: b.relay,
		Concurrency: 4, ShutdownTimeout: 2 * time.Second,
		Retry: workers.RetryPolicy{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		// tok_timeout keeps an order pending long past this, so the
		// follow-up finds it overdue.
		FollowUpDelay: 500 * time.Millisecond,
	})
	require.NoError(t, err)
	client := asynq.NewClientFromRedisClient(qrdb)
	iv, err := invoicing.New(invoicing.Config{DB: b.db, Client: client, Observer: b.relay})
	require.NoError(t, err)
	iv.Register(w.Mux())
	groups, err := stream.NewGroups(stream.GroupsConfig{Redis: b.rdb, DB: b.db, Names: b.names, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	for _, sub := range append(w.Subscriptions(workers.SubscriptionOptions{StartFrom: stream.StartBeginning}), iv.Subscription()) {
		require.NoError(t, groups.Add(sub))
	}
	require.NoError(t, w.Start(ctx))
	require.NoError(t, groups.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, groups.Stop(sctx))
		require.NoError(t, w.Stop(sctx))
		_ = client.Close()
	})
	b.w = w
	return b
}

// emitted reads every entry of every domain stream of the test.
func (b *catalogBundle) emitted(t *testing.T) []redis.XMessage {
	t.Helper()
	var out []redis.XMessage
	for _, d := range stream.Domains {
		for _, key := range b.names.Streams(d) {
			msgs, err := b.rdb.XRange(context.Background(), key, "-", "+").Result()
			require.NoError(t, err)
			out = append(out, msgs...)
		}
	}
	return out
}

func (b *catalogBundle) waitStatus(t *testing.T, order uuid.UUID, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		r := b.serve(http.MethodGet, "/v1/orders/"+order.String(), b.front, nil)
		var o map[string]any
		return r.code == http.StatusOK && json.Unmarshal(r.body, &o) == nil && o["status"] == want
	}, 20*time.Second, 50*time.Millisecond, "order %s %s", order, want)
}

func (b *catalogBundle) placeOrder(t *testing.T, user, product uuid.UUID, token string) (uuid.UUID, string) {
	t.Helper()
	r := b.do(http.MethodPost, "/v1/orders", b.front, map[string]any{
		"user_id": user, "payment_method": token,
		"items": []map[string]any{{"product_id": product, "quantity": 1}},
	}).status(http.StatusCreated).json()
	id, err := uuid.Parse(r["id"].(string))
	require.NoError(t, err)
	return id, r["items"].([]any)[0].(map[string]any)["id"].(string)
}

// TestEmittedEventsMatchTheCatalogue drives the flows of the API, the
// workers and invoicing, then checks every envelope that reached the
// streams against asyncapi.yaml.
func TestEmittedEventsMatchTheCatalogue(t *testing.T) {
	t.Parallel()
	b := catalogSetup(t)
	cat := loadCatalog(t)

	// Registration, an update and a login.
	user := b.do(http.MethodPost, "/v1/users", b.front, map[string]any{"email": "ada@example.com", "name": "Ada", "country": "DE"}).status(http.StatusCreated).id()
	b.do(http.MethodPatch, "/v1/users/"+user.String(), b.front, map[string]any{"name": "Ada L."}).status(http.StatusOK)
	b.do(http.MethodPost, "/v1/users/"+user.String()+"/sessions", b.front, map[string]any{}).status(http.StatusCreated)

	// A product, a change and a stock adjustment.
	product := b.product(b.keyA, map[string]any{"stock": 20, "attributes": map[string]string{"colour": "blue"}})
	b.do(http.MethodPatch, "/v1/products/"+product.String(), b.keyA, map[string]any{"name": "Blue mug"}).status(http.StatusOK)
	b.do(http.MethodPost, "/v1/products/"+product.String()+"/stock-adjustments", b.keyA, map[string]any{"delta": 5, "reason": "delivery"}).status(http.StatusOK)

	// Placed, confirmed, shipped, delivered, then part of it returned.
	delivered, item := b.placeOrder(t, user, product, "tok_visa")
	b.waitStatus(t, delivered, "confirmed")
	b.do(http.MethodPost, "/v1/orders/"+delivered.String()+"/shipment", b.keyA, nil).status(http.StatusOK)
	b.do(http.MethodPost, "/v1/orders/"+delivered.String()+"/delivery", b.keyA, nil).status(http.StatusOK)
	ret := b.do(http.MethodPost, "/v1/orders/"+delivered.String()+"/returns", b.front, map[string]any{"order_item_id": item, "quantity": 1, "reason": "chipped"}).status(http.StatusCreated).id()
	b.do(http.MethodPost, "/v1/returns/"+ret.String()+"/resolution", b.keyA, map[string]any{"decision": "accept", "refund_minor": 1250}).status(http.StatusOK)

	// Declined by the card, cancelled by a person after payment, and one
	// whose charge never answers (overdue follow-up).
	declined, _ := b.placeOrder(t, user, product, "tok_decline")
	b.waitStatus(t, declined, "cancelled")
	cancelled, _ := b.placeOrder(t, user, product, "tok_visa")
	b.waitStatus(t, cancelled, "confirmed")
	b.do(http.MethodPost, "/v1/orders/"+cancelled.String()+"/cancellation", b.front, map[string]any{"reason": "changed my mind"}).status(http.StatusOK)
	b.placeOrder(t, user, product, "tok_timeout")

	// A corporate buyer billed in an invoice run, a second one whose order
	// cannot be billed, and the retry of its failed account.
	for _, name := range []string{"Good GmbH", "Bad GmbH"} {
		buyer := b.do(http.MethodPost, "/v1/users", b.front, map[string]any{
			"email": "buyer@" + strings.ToLower(strings.Fields(name)[0]) + ".example", "name": "Buyer",
			"corporate_account": map[string]any{"name": name, "billing_email": "billing@corp.example"},
		}).status(http.StatusCreated).id()
		o, _ := b.placeOrder(t, buyer, product, "tok_visa")
		b.waitStatus(t, o, "confirmed")
		_, err := b.db.Exec(`UPDATE orders SET confirmed_at = '2025-10-20T10:00:00Z' WHERE id = $1`, o)
		require.NoError(t, err)
		if name == "Bad GmbH" {
			_, err = b.db.Exec(`UPDATE orders SET subtotal_minor = subtotal_minor + 1 WHERE id = $1`, o)
			require.NoError(t, err)
		}
	}
	run := b.do(http.MethodPost, "/v1/admin/invoicing/runs", b.admin, map[string]any{"period_start": "2025-10-15", "period_end": "2025-10-31"}).status(http.StatusCreated).id()
	require.Eventually(t, func() bool {
		r := b.serve(http.MethodGet, "/v1/admin/invoicing/runs/"+run.String(), b.admin, nil)
		return r.code == http.StatusOK && strings.Contains(string(r.body), `"status":"completed"`)
	}, 30*time.Second, 100*time.Millisecond, "run completes")
	b.do(http.MethodPost, "/v1/admin/invoicing/runs/"+run.String()+"/retry-failed", b.admin, nil).status(http.StatusOK)

	// An announcement.
	b.do(http.MethodPost, "/v1/admin/announcements", b.admin, map[string]any{"message": "Maintenance at noon", "level": "warning"}).status(http.StatusCreated)

	want := []string{
		"seller.created", "user.registered", "user.updated", "user.logged_in", "user.segments_changed",
		"product.created", "product.updated", "inventory.adjusted",
		"order.created", "inventory.reserved", "payment.succeeded", "order.confirmed", "order.shipped", "order.delivered",
		"return.opened", "return.resolved", "inventory.restocked",
		"payment.failed", "order.cancelled", "inventory.released", "payment.refunded", "order.followup_overdue",
		"invoicing.run_started", "invoice.created", "invoicing.run_completed", "invoicing.retry_requested",
		"system.maintenance",
	}
	var seen map[string]int
	require.Eventually(t, func() bool {
		seen = map[string]int{}
		for _, m := range b.emitted(t) {
			seen[m.Values[stream.FieldType].(string)]++
		}
		for _, typ := range want {
			if seen[typ] == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "every flow's events reach the streams")

	var n int
	for _, m := range b.emitted(t) {
		raw, ok := m.Values[stream.FieldEnvelope].(string)
		require.True(t, ok, "entry %s has an envelope", m.ID)
		ce := cat.validate(t, []byte(raw))
		require.Equal(t, m.Values[stream.FieldType], ce.Type())
		require.Equal(t, m.Values[stream.FieldID], ce.ID())
		if s, ok := ce.Extensions()["seller"]; ok {
			require.Equal(t, m.Values[stream.FieldSeller], s)
		}
		n++
	}
	require.Positive(t, n)
	require.Positive(t, seen["seller.created"])
	t.Logf("validated %d envelopes of %d types", n, len(seen))
}

// TestCatalogueRejectsWhatItDoesNotDescribe shows the validation can fail:
// an unknown type, a field the schema lacks and a wrong dataschema are
// all refused.
func TestCatalogueRejectsWhatItDoesNotDescribe(t *testing.T) {
	t.Parallel()
	cat := loadCatalog(t)
	good := func() map[string]any {
		return map[string]any{
			"id": uuid.NewString(), "type": "system.maintenance", "source": "/bazaar", "specversion": "1.0",
			"time": "2026-01-02T03:04:05Z", "subject": "announcements", "datacontenttype": "application/json",
			"dataschema": "urn:bazaar:system.maintenance:1",
			"data":       map[string]any{"message": "m", "level": "info", "starts_at": "2026-01-02T03:04:05Z", "expires_at": "2026-01-02T04:04:05Z"},
		}
	}
	cat.validate(t, mustJSON(t, good()))
	for name, mutate := range map[string]func(map[string]any){
		"undescribed field":        func(e map[string]any) { e["data"].(map[string]any)["colour"] = "red" },
		"wrong level":              func(e map[string]any) { e["data"].(map[string]any)["level"] = "panic" },
		"seller on a public event": func(e map[string]any) { e["seller"] = uuid.NewString() },
		"dataschema version":       func(e map[string]any) { e["dataschema"] = "urn:bazaar:system.maintenance:2" },
	} {
		e := good()
		mutate(e)
		require.False(t, validates(cat, mustJSON(t, e)), "%s: accepted", name)
	}
	require.False(t, validates(cat, mustJSON(t, map[string]any{"type": "order.teleported"})))
}

// validates runs the checks of catalog.validate without failing the test.
func validates(c *catalog, raw []byte) bool {
	ce := cloudevents.New()
	if json.Unmarshal(raw, &ce) != nil || ce.Validate() != nil {
		return false
	}
	msg, ok := c.messages()[ce.Type()].(map[string]any)
	if !ok || !slices.Contains(msg["x-dataschemas"].([]any), any(ce.DataSchema())) {
		return false
	}
	doc, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	env, err := c.compiler.Compile(catalogURL + "#/components/messages/" + ce.Type() + "/payload")
	if err != nil || env.Validate(doc) != nil {
		return false
	}
	sm := urnRe.FindStringSubmatch(ce.DataSchema())
	data, _ := jsonschema.UnmarshalJSON(bytes.NewReader(ce.Data()))
	s, err := c.compiler.Compile(catalogURL + "#/components/schemas/" + sm[1] + ".v" + sm[2])
	return err == nil && s.Validate(data) == nil
}

// eventConstructors are the functions that build events and the index of
// their event type argument. A call of one of them inside another (a
// wrapper passing its own parameter on) is checked at the wrapper's calls.
var eventConstructors = map[string]int{
	"NewEvent": 0, "NewOrderEvent": 0, "NewUserEvent": 0, "NewSellerEvent": 0,
	"NewProductEvent": 0, "NewReturnEvent": 0, "newEvent": 1,
}

// TestCatalogueHasEveryEventTypeTheCodeEmits reads the source of every
// package that records events and resolves the type argument of each
// event constructor call to its possible values; each must have a message
// in asyncapi.yaml, and each message must be one the code can emit.
func TestCatalogueHasEveryEventTypeTheCodeEmits(t *testing.T) {
	t.Parallel()
	cat := loadCatalog(t)
	dirs := map[string]string{"api": ".", "store": "../sql/store", "workers": "../workers", "invoicing": "../workers/invoicing", "stream": "../stream", "scheduler": "../scheduler", "main": "../cmd/bazaar"}
	fset := token.NewFileSet()
	files := map[string][]*ast.File{}
	consts := map[string]map[string]string{} // package -> const -> value
	for pkg, dir := range dirs {
		consts[pkg] = map[string]string{}
		names, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			src, err := os.ReadFile(name)
			require.NoError(t, err)
			f, err := parser.ParseFile(fset, name, src, 0)
			require.NoError(t, err)
			files[pkg] = append(files[pkg], f)
			for _, d := range f.Decls {
				if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
					for _, spec := range g.Specs {
						vs := spec.(*ast.ValueSpec)
						for i, n := range vs.Names {
							if i < len(vs.Values) {
								if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
									consts[pkg][n.Name], _ = strconv.Unquote(lit.Value)
								}
							}
						}
					}
				}
			}
		}
	}
	// order."+status: every state an order can be moved into.
	var orderStates []string
	for _, s := range []store.OrderStatus{store.OrderPending, store.OrderConfirmed, store.OrderCancelled, store.OrderShipped, store.OrderDelivered} {
		for _, from := range []store.OrderStatus{store.OrderPending, store.OrderConfirmed, store.OrderCancelled, store.OrderShipped, store.OrderDelivered} {
			if store.CanTransition(from, s) {
				orderStates = append(orderStates, "order."+string(s))
				break
			}
		}
	}

	emitted := map[string][]string{}
	for pkg, fs := range files {
		for _, f := range fs {
			for _, d := range f.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				params := map[string]bool{}
				for _, p := range fn.Type.Params.List {
					for _, n := range p.Names {
						params[n.Name] = true
					}
				}
				_, wrapper := eventConstructors[fn.Name.Name]
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					var name string
					switch f := call.Fun.(type) {
					case *ast.Ident:
						name = f.Name
					case *ast.SelectorExpr:
						name = f.Sel.Name
					}
					idx, ok := eventConstructors[name]
					if !ok || idx >= len(call.Args) {
						return true
					}
					arg := call.Args[idx]
					if id, ok := arg.(*ast.Ident); ok && wrapper && params[id.Name] {
						return true
					}
					where := fset.Position(call.Pos()).String()
					vals := resolveType(pkg, fn.Body, arg, consts)
					if name == "NewOrderEvent" && slices.Contains(vals, "") {
						vals = append(slices.DeleteFunc(vals, func(s string) bool { return s == "" }), orderStates...)
					}
					require.NotEmpty(t, vals, "%s: cannot tell which event type %s records; pass a constant", where, name)
					for _, v := range vals {
						emitted[v] = append(emitted[v], where)
					}
					return true
				})
			}
		}
	}
	require.Contains(t, emitted, "inventory.adjusted", "the scan finds the store's constructors")
	for typ, where := range emitted {
		require.Contains(t, cat.eventTypes(), typ, "%s can be emitted (%s) but asyncapi.yaml has no message for it", typ, where[0])
	}
	for _, typ := range cat.eventTypes() {
		require.Contains(t, emitted, typ, "asyncapi.yaml describes %s, which no code emits", typ)
	}
}

// resolveType returns the string values an event type argument can have:
// a literal, a constant (of this package or another scanned one), or a
// local variable, through every assignment to it in the function.
func resolveType(pkg string, body *ast.BlockStmt, arg ast.Expr, consts map[string]map[string]string) []string {
	switch a := arg.(type) {
	case *ast.BasicLit:
		if s, err := strconv.Unquote(a.Value); err == nil && a.Kind == token.STRING {
			return []string{s}
		}
	case *ast.SelectorExpr:
		if x, ok := a.X.(*ast.Ident); ok {
			if v, ok := consts[x.Name][a.Sel.Name]; ok {
				return []string{v}
			}
		}
	case *ast.Ident:
		if v, ok := consts[pkg][a.Name]; ok {
			return []string{v}
		}
		if body == nil {
			return nil
		}
		var out []string
		unresolved := false
		ast.Inspect(body, func(n ast.Node) bool {
			as, ok := n.(*ast.AssignStmt)
			if !ok || len(as.Lhs) != len(as.Rhs) {
				return true
			}
			for i, l := range as.Lhs {
				if id, ok := l.(*ast.Ident); ok && id.Name == a.Name {
					v := resolveType(pkg, nil, as.Rhs[i], consts)
					if len(v) == 0 {
						unresolved = true
					}
					out = append(out, v...)
				}
			}
			return true
		})
		if unresolved {
			return nil
		}
		return out
	}
	return nil
}
