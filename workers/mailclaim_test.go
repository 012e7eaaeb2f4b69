package workers

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
)

// pgProxy forwards TCP connections to PostgreSQL until cut: then it closes
// every open connection and refuses new ones (counting them) until
// restored. It stands for PostgreSQL restarting, seen from one pool,
// without touching the server other tests use.
type pgProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]bool
	refused atomic.Int64
	wg      sync.WaitGroup
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *pgProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			p.refused.Add(1)
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *pgProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// cut closes the open connections and refuses new ones.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *pgProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// dsn returns dsn pointed at the proxy.
func (p *pgProxy) dsn(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.Host = p.ln.Addr().String()
	return u.String()
}

// The mail server accepts the mail, then PostgreSQL goes away before the
// mail is recorded and stays away while the task fails and is retried.
// When PostgreSQL is back the buyer has exactly one welcome mail: the
// record is retried and the retries wait for the claim instead of sending.
func TestMailIsSentOnceWhenPostgresFailsAfterTheHandOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var proxy *pgProxy
	var workerDB *sqlx.DB
	b := setup(t, setupOpts{noStart: true, mutate: func(c *Config) {
		// The workers reach PostgreSQL through the proxy; the test
		// itself reads the database directly.
		var name string
		require.NoError(t, c.DB.GetContext(ctx, &name, `SELECT current_database()`))
		base, err := url.Parse(storetest.AdminURL())
		require.NoError(t, err)
		proxy = newPGProxy(t, base.Host)
		base.Path = "/" + name
		workerDB, err = sqlx.Open("postgres", proxy.dsn(t, base.String()))
		require.NoError(t, err)
		workerDB.SetMaxOpenConns(2)
		t.Cleanup(func() { _ = workerDB.Close() })
		c.DB = workerDB
		c.Policies = map[string]TaskPolicy{TypeEmailWelcome: {MaxRetry: 12, Timeout: 2 * time.Second}}
	}})

	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	b.sink.beforeReply = func(SinkMail) {
		once.Do(func() {
			close(held)
			<-release
		})
	}
	require.NoError(t, b.w.Start(ctx))

	u, err := store.CreateUser(ctx, b.db, store.User{Email: "ada@bazaar.test", Name: "Ada"}, nil)
	require.NoError(t, err)
	task, err := NewUserTask(TypeEmailWelcome, Meta{Version: PayloadVersion}, u.ID)
	require.NoError(t, err)
	require.NoError(t, b.w.Enqueue(ctx, task, "welcome-once"))

	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the mail never reached the sink")
	}
	proxy.cut()
	close(release) // the server answers 250: the mail is out

	// PostgreSQL stays away until the workers tried it several times and
	// the first attempt ran out of time, so its task was retried.
	eventually(t, 30*time.Second, func() bool {
		info, err := b.insp.GetTaskInfo(QueueDefault, "welcome-once")
		return err == nil && proxy.refused.Load() >= 3 && (info.Retried >= 1 || info.State == asynq.TaskStateRetry)
	}, "the task was not retried while PostgreSQL was away (refused %d)", proxy.refused.Load())
	proxy.restore()

	b.settle(t, 60*time.Second)
	sent, err := store.EmailSent(ctx, b.db, "welcome:"+u.ID.String())
	require.NoError(t, err)
	require.True(t, sent, "the mail is recorded once PostgreSQL is back")
	require.Equal(t, 1, b.sink.Count("ada@bazaar.test", "Welcome"), "exactly one welcome mail")
	var claims int
	require.NoError(t, b.db.GetContext(ctx, &claims, `SELECT count(*) FROM mail_claims`))
	require.Zero(t, claims, "the record deleted the claim")
	_, err = b.insp.GetTaskInfo(QueueDefault, "welcome-once")
	require.True(t, err == nil || errors.Is(err, asynq.ErrTaskNotFound))
}
