package academy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func exchange(t *testing.T) string {
	t.Helper()
	ex, err := SpawnExchange(`{"port": 0}`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Close() })
	url, err := ex.URL()
	if err != nil {
		t.Fatal(err)
	}
	return url
}

func agentID(t *testing.T, registration string) string {
	t.Helper()
	var reg struct {
		AgentID json.RawMessage `json:"agent_id"`
	}
	if err := json.Unmarshal([]byte(registration), &reg); err != nil {
		t.Fatal(err)
	}
	return string(reg.AgentID)
}

func TestFactoryOptionsAndErrors(t *testing.T) {
	if Version() == "" {
		t.Fatal("no version")
	}
	if _, err := NewFactory("ftp://nope", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad URL: %v", err)
	}
	retries := 0
	f, err := NewFactory("http://127.0.0.1:9", &Options{Retries: &retries, ConnectTimeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.NewUserClient("nobody")
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusConnection || !strings.Contains(e.Message, "127.0.0.1:9") {
		t.Fatalf("want a connection error naming the exchange, got %v", err)
	}
}

func TestSendRecvBetweenUserAndAgent(t *testing.T) {
	url := exchange(t)
	f, err := NewFactory(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	user, err := f.NewUserClient("go-user")
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	reg, err := user.RegisterAgent("gotest.Sink", "sink")
	if err != nil {
		t.Fatal(err)
	}
	agent, err := f.NewAgentClient(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	me, _ := user.MailboxID()
	msg := fmt.Sprintf(`{"header": {"src": %s, "dest": %s, "tag": "2ade6fd0-1373-4ac2-aaf7-5f09c2d3cb00", "kind": "request"}, "body": {"kind": "ping-request"}}`, me, agentID(t, reg))
	if err := user.Send(msg); err != nil {
		t.Fatal(err)
	}
	got, err := agent.Recv(5 * time.Second)
	var m struct {
		Header struct{ Tag string }
		Body   struct{ Kind string }
	}
	if err != nil || json.Unmarshal([]byte(got), &m) != nil ||
		m.Header.Tag != "2ade6fd0-1373-4ac2-aaf7-5f09c2d3cb00" || m.Body.Kind != "ping-request" {
		t.Fatalf("recv: %q, %v", got, err)
	}
	if _, err := agent.Recv(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("want a timeout, got %v", err)
	}
	if s, err := user.Status(agentID(t, reg)); err != nil || s != Active {
		t.Fatalf("status %v %v", s, err)
	}
	ids, err := user.Discover("gotest.Sink", false)
	if err != nil || len(ids) != 1 {
		t.Fatalf("discover: %v %v", ids, err)
	}
	if err := user.Terminate(agentID(t, reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Recv(5 * time.Second); !errors.Is(err, ErrMailboxTerminated) {
		t.Fatalf("want terminated, got %v", err)
	}
}

// userAndAgent makes a factory, a user and an agent of agentType on the
// test exchange, closed when the test ends.
func userAndAgent(t *testing.T, opts *Options, agentType, name string) (user, agent *Client, reg string) {
	t.Helper()
	return userAndAgentAt(t, exchange(t), opts, agentType, name)
}

// userAt makes a factory and a user on the exchange at url, closed when
// the test ends.
func userAt(t *testing.T, url string, opts *Options) (*Factory, *Client) {
	t.Helper()
	f, err := NewFactory(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	user, err := f.NewUserClient("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { user.Close() })
	return f, user
}

// userAndAgentAt is userAndAgent on the exchange at url.
func userAndAgentAt(t *testing.T, url string, opts *Options, agentType, name string) (user, agent *Client, reg string) {
	t.Helper()
	f, user := userAt(t, url, opts)
	reg, err := user.RegisterAgent(agentType, name)
	if err != nil {
		t.Fatal(err)
	}
	agent, err = f.NewAgentClient(reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	return user, agent, reg
}

func TestSendAsyncFromOneGoroutine(t *testing.T) {
	user, agent, reg := userAndAgent(t, &Options{MaxInFlight: 8}, "gotest.AsyncSink", "")
	me, _ := user.MailboxID()
	const n = 200
	outcomes := make(chan error, n)
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf(`{"header": {"src": %s, "dest": %s, "tag": "2ade6fd0-1373-4ac2-aaf7-5f09c2d3%04d", "kind": "request"}, "body": {"kind": "ping-request"}}`, me, agentID(t, reg), i)
		if err := user.SendAsync(msg, func(err error) { outcomes <- err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := user.Flush(-1); err != nil {
		t.Fatal(err)
	}
	if len(outcomes) != n {
		t.Fatalf("%d callbacks before Flush returned, want %d", len(outcomes), n)
	}
	for i := 0; i < n; i++ {
		if err := <-outcomes; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < n {
		got, err := agent.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(seen), err)
		}
		var m struct{ Header struct{ Tag string } }
		if json.Unmarshal([]byte(got), &m) != nil || seen[m.Header.Tag] {
			t.Fatalf("bad or repeated message %q", got)
		}
		seen[m.Header.Tag] = true
	}
	if err := user.SendAsync("{", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("want invalid argument, got %v", err)
	}
}

func TestAGoAgentServesAGoUser(t *testing.T) {
	user, agent, reg := userAndAgent(t, &Options{MaxConcurrency: 4}, "gotest.Calc", "calc")
	served := make(chan error, 1)
	go func() {
		served <- agent.Serve(func(action string, args, kwargs json.RawMessage) (any, error) {
			switch action {
			case "add":
				var xs []float64
				if err := json.Unmarshal(args, &xs); err != nil {
					return nil, err
				}
				return xs[0] + xs[1], nil
			case "greet":
				var kw map[string]string
				json.Unmarshal(kwargs, &kw)
				return map[string]string{"hello": kw["name"]}, nil
			}
			return nil, fmt.Errorf("no action %s", action)
		})
	}()
	id := agentID(t, reg)
	result, err := user.Action(id, "add", []any{2, 3}, nil, 10*time.Second)
	if err != nil || string(result) != "5" {
		t.Fatalf("add: %s %v", result, err)
	}
	result, err = user.Action(id, "greet", nil, map[string]any{"name": "gö"}, 10*time.Second)
	if err != nil || string(result) != `{"hello":"gö"}` {
		t.Fatalf("greet: %s %v", result, err)
	}
	_, err = user.Action(id, "nope", nil, nil, 10*time.Second)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "no action nope") {
		t.Fatalf("want a remote error, got %v", err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := user.Action(id, "add", []any{i, i}, nil, 10*time.Second)
			if err != nil || string(r) != fmt.Sprint(2*i) {
				t.Errorf("add(%d, %d): %s %v", i, i, r, err)
			}
		}(i)
	}
	wg.Wait()
	if rtt, err := user.Ping(id, 10*time.Second); err != nil || rtt <= 0 {
		t.Fatalf("ping: %v %v", rtt, err)
	}
	if err := user.ShutdownAgent(id, -1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not end after shutdown")
	}
	if s, _ := user.Status(id); s != Terminated {
		t.Fatalf("status after shutdown: %v", s)
	}
}

// calcHandler serves the actions of the queue tests.
func calcHandler(action string, args, kwargs json.RawMessage) (any, error) {
	switch action {
	case "add":
		var xs []int
		if err := json.Unmarshal(args, &xs); err != nil {
			return nil, err
		}
		return xs[0] + xs[1], nil
	case "greet":
		var kw map[string]string
		if err := json.Unmarshal(kwargs, &kw); err != nil {
			return nil, err
		}
		return map[string]string{"hello": kw["name"]}, nil
	case "explode":
		panic("boom")
	}
	return nil, fmt.Errorf("no action %s", action)
}

// serveOnQueue serves agent with handler through a queue of its own
// until the test ends; the returned channel gets ServeQueue's result.
func serveOnQueue(t *testing.T, agent *Client, handler Handler) (context.CancelFunc, <-chan error) {
	t.Helper()
	q, err := NewQueue()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.ServeQueue(ctx, q, handler) }()
	t.Cleanup(func() {
		cancel()
		<-served
		q.Close()
	})
	return cancel, served
}

func TestActionAsyncResultsAndErrors(t *testing.T) {
	user, agent, reg := userAndAgent(t, nil, "gotest.AsyncCalc", "")
	serveOnQueue(t, agent, calcHandler)
	id := agentID(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r, err := user.ActionAsync(ctx, id, "add", []any{40, 2}, nil); err != nil || string(r) != "42" {
		t.Fatalf("add: %s %v", r, err)
	}
	if r, err := user.ActionAsync(ctx, id, "greet", nil, map[string]any{"name": "gö"}); err != nil || string(r) != `{"hello":"gö"}` {
		t.Fatalf("greet: %s %v", r, err)
	}
	_, err := user.ActionAsync(ctx, id, "nope", nil, nil)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "no action nope") {
		t.Fatalf("want a remote error naming the action, got %v", err)
	}
	_, err = user.ActionAsync(ctx, id, "explode", nil, nil)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "panic in the Go handler of explode: boom") {
		t.Fatalf("want the handler's panic as a remote error, got %v", err)
	}
	if _, err := user.ActionAsync(ctx, id, "add", []any{func() {}}, nil); err == nil {
		t.Fatal("unmarshalable arguments were accepted")
	}
	if _, err := user.ActionAsync(ctx, "{not json", "add", nil, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("want invalid argument for a bad id, got %v", err)
	}
	if rtt, err := user.PingAsync(ctx, id); err != nil || rtt <= 0 {
		t.Fatalf("ping: %v %v", rtt, err)
	}
	// A request through RequestAsync gets the whole response message.
	response, err := user.RequestAsync(ctx, id, `{"kind": "action-request", "action": "add", "pargs": [1, 2], "kargs": {}, "serialization": "json"}`)
	var m struct {
		Header struct{ Kind string }
		Body   struct {
			Kind   string
			Result []string
		}
	}
	if err != nil || json.Unmarshal([]byte(response), &m) != nil || m.Header.Kind != "response" ||
		m.Body.Kind != "action-response" || len(m.Body.Result) != 2 || m.Body.Result[1] != "3" {
		t.Fatalf("request: %s %v", response, err)
	}
	// The agent's mailbox terminated: calls fail with its status.
	if err := user.Terminate(id); err != nil {
		t.Fatal(err)
	}
	if _, err := user.ActionAsync(ctx, id, "add", []any{1, 2}, nil); !errors.Is(err, ErrMailboxTerminated) {
		t.Fatalf("want mailbox terminated, got %v", err)
	}
	if q := user.queue; q == nil || q.waiting() != 0 {
		t.Fatalf("the client's queue should exist with nothing waiting")
	}
}

// gatedAgent serves "wait", which returns only once release is closed,
// and "add".
func gatedAgent(t *testing.T, agent *Client) (release chan struct{}, started chan string) {
	release, started = make(chan struct{}), make(chan string, 100)
	serveOnQueue(t, agent, func(action string, args, kwargs json.RawMessage) (any, error) {
		if action == "wait" {
			started <- string(args)
			<-release
			return "late", nil
		}
		return calcHandler(action, args, kwargs)
	})
	return release, started
}

func TestActionAsyncReturnsWhenItsContextEnds(t *testing.T) {
	user, agent, reg := userAndAgent(t, nil, "gotest.Slow", "")
	release, started := gatedAgent(t, agent)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	id := agentID(t, reg)

	// Cancelled while the agent still works: ctx.Err() before the answer.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := user.ActionAsync(ctx, id, "wait", []any{1}, nil)
		done <- err
	}()
	if got := <-started; got != "[1]" {
		t.Fatalf("the agent got %s", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}

	// A deadline that passes while the agent works: DeadlineExceeded.
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if _, err := user.ActionAsync(short, id, "wait", []any{2}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want context.DeadlineExceeded, got %v", err)
	}
	<-started

	// A context that ended already starts nothing.
	if _, err := user.ActionAsync(ctx, id, "add", []any{1, 2}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled at once, got %v", err)
	}

	// The late answers come and are dropped; the next calls get their own.
	q := user.queue
	if n := q.waiting(); n != 0 {
		t.Fatalf("%d calls still wait after their contexts ended", n)
	}
	close(release)
	bg, cancelBg := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelBg()
	for i := 0; i < 5; i++ {
		if r, err := user.ActionAsync(bg, id, "add", []any{i, 1}, nil); err != nil || string(r) != fmt.Sprint(i+1) {
			t.Fatalf("after the late answers, add(%d, 1): %s %v", i, r, err)
		}
	}
}

func TestClosingFailsCallsInFlight(t *testing.T) {
	user, agent, reg := userAndAgent(t, nil, "gotest.Closing", "")
	release, started := gatedAgent(t, agent)
	defer close(release)
	id := agentID(t, reg)
	ctx := context.Background()

	// A shared queue closed under a call: the call fails with CLOSED, and
	// so do later calls on that queue.
	shared, err := NewQueue()
	if err != nil {
		t.Fatal(err)
	}
	user.SetQueue(shared)
	done := make(chan error, 1)
	go func() {
		_, err := user.ActionAsync(ctx, id, "wait", []any{1}, nil)
		done <- err
	}()
	<-started
	shared.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("want closed after Queue.Close, got %v", err)
	}
	if _, err := user.ActionAsync(ctx, id, "add", []any{1, 2}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("want closed on a closed queue, got %v", err)
	}
	shared.Close() // twice is a no-op

	// The client's own queue: closing the client fails its call.
	user.SetQueue(nil)
	go func() {
		_, err := user.ActionAsync(ctx, id, "wait", []any{2}, nil)
		done <- err
	}()
	<-started
	if err := user.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("want closed after Client.Close, got %v", err)
	}
	if _, err := user.ActionAsync(ctx, id, "add", []any{1, 2}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("want closed on a closed client, got %v", err)
	}
}

func TestServeQueue(t *testing.T) {
	user, agent, reg := userAndAgent(t, nil, "gotest.QueueServed", "")
	id := agentID(t, reg)
	q, err := NewQueue()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	served := make(chan error, 1)
	go func() { served <- agent.ServeQueue(context.Background(), q, calcHandler) }()

	// Blocking callers are served too, several at once.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := user.Action(id, "add", []any{i, i}, nil, 10*time.Second)
			if err != nil || string(r) != fmt.Sprint(2*i) {
				t.Errorf("add(%d, %d): %s %v", i, i, r, err)
			}
		}(i)
	}
	wg.Wait()
	if _, err := user.Action(id, "nope", nil, nil, 10*time.Second); !errors.Is(err, ErrRemote) {
		t.Fatalf("want a remote error, got %v", err)
	}
	if err := agent.ServeQueue(context.Background(), q, calcHandler); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("serving twice: want invalid argument, got %v", err)
	}
	// A shutdown request ends serving with nil (and terminates the mailbox).
	if err := user.ShutdownAgent(id, -1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeQueue did not return after a shutdown request")
	}
	if q.waiting() != 0 {
		t.Fatal("the serving still waits on the queue")
	}
	if s, _ := user.Status(id); s != Terminated {
		t.Fatalf("status after shutdown: %v", s)
	}
}

func TestServeQueueEndsWithItsContext(t *testing.T) {
	user, agent, reg := userAndAgent(t, nil, "gotest.QueueCtx", "")
	id := agentID(t, reg)
	q, err := NewQueue()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.ServeQueue(ctx, q, calcHandler) }()
	if r, err := user.Action(id, "add", []any{1, 2}, nil, 10*time.Second); err != nil || string(r) != "3" {
		t.Fatalf("add: %s %v", r, err)
	}
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	// Stopped, not shut down: the mailbox stays and the agent serves again.
	if s, _ := user.Status(id); s != Active {
		t.Fatalf("status after stop: %v", s)
	}
	go func() { served <- agent.ServeQueue(context.Background(), q, calcHandler) }()
	if r, err := user.Action(id, "add", []any{2, 2}, nil, 10*time.Second); err != nil || string(r) != "4" {
		t.Fatalf("add after serving again: %s %v", r, err)
	}
	if err := agent.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("want nil after Stop, got %v", err)
	}
}

// waitingAgent serves agent with a ContextHandler, through a queue
// (ServeQueueContext) or on library threads (ServeContext); its "wait"
// action works until its ctx ends (at most 10 s) and reports how it ended.
func waitingAgent(t *testing.T, agent *Client, queued bool) (started chan struct{}, ended chan error, served chan error) {
	started, ended, served = make(chan struct{}, 1), make(chan error, 1), make(chan error, 1)
	handler := func(ctx context.Context, action string, args, kwargs json.RawMessage) (any, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("the handler's ctx did not end within 10 s")
		}
		return "late", nil
	}
	if !queued {
		go func() { served <- agent.ServeContext(handler) }()
		return started, ended, served
	}
	q, err := NewQueue()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	go func() { served <- agent.ServeQueueContext(context.Background(), q, handler) }()
	return started, ended, served
}

func TestAContextHandlerStopsWhenItsRequestIsAnsweredWithoutIt(t *testing.T) {
	for _, queued := range []bool{true, false} {
		// The mailbox terminated: the caller is told so, the handler's
		// ctx ends, and serving returns ErrMailboxTerminated.
		user, agent, reg := userAndAgent(t, nil, "gotest.Cancelled", "")
		id := agentID(t, reg)
		started, ended, served := waitingAgent(t, agent, queued)
		called := make(chan error, 1)
		go func() {
			_, err := user.Action(id, "wait", nil, nil, 30*time.Second)
			called <- err
		}()
		<-started
		if err := user.Terminate(id); err != nil {
			t.Fatal(err)
		}
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("queued %v, terminate: the handler's ctx: %v", queued, err)
		}
		if err := <-called; !errors.Is(err, ErrMailboxTerminated) {
			t.Fatalf("queued %v, terminate: the caller got %v", queued, err)
		}
		if err := <-served; !errors.Is(err, ErrMailboxTerminated) {
			t.Fatalf("queued %v, terminate: serving ended with %v", queued, err)
		}

		// Serving stopped: the handler's ctx ends too, and serving returns
		// nil once the handler has returned.
		user2, agent2, reg2 := userAndAgent(t, nil, "gotest.Stopped", "")
		id2 := agentID(t, reg2)
		started, ended, served = waitingAgent(t, agent2, queued)
		go func() {
			_, err := user2.Action(id2, "wait", nil, nil, 30*time.Second)
			called <- err
		}()
		<-started
		if err := agent2.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("queued %v, stop: the handler's ctx: %v", queued, err)
		}
		if err := <-served; err != nil {
			t.Fatalf("queued %v, stop: serving ended with %v", queued, err)
		}
		if err := <-called; err == nil {
			t.Fatalf("queued %v, stop: the caller got the late answer", queued)
		}
	}
}

func TestAPanickingHandlerAnswersItsCallerWithTheError(t *testing.T) {
	user, agent, reg := userAndAgent(t, nil, "gotest.Panics", "")
	id := agentID(t, reg)
	served := make(chan error, 1)
	go func() {
		served <- agent.Serve(func(action string, args, kwargs json.RawMessage) (any, error) {
			panic("on purpose")
		})
	}()
	_, err := user.Action(id, "boom", nil, nil, 10*time.Second)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "panic in the Go handler of boom: on purpose") {
		t.Fatalf("want the panic as a remote error, got %v", err)
	}
	if err := agent.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serving after a panic ended with %v", err)
	}
}

// osThreads is this process's thread count (Linux).
func osThreads(t *testing.T) int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if n, ok := strings.CutPrefix(line, "Threads:"); ok {
			v, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// TestTenThousandActionsInFlightWithoutAThreadEach has 10,000 goroutines
// each with one ActionAsync in flight at the same time (the agent, served
// through a queue in the same process, holds every answer until all
// 10,000 requests have come), and checks every result and that the
// process's OS threads stay few.
func TestTenThousandActionsInFlightWithoutAThreadEach(t *testing.T) {
	const n = 10_000
	const maxThreads = 64
	user, agent, reg := userAndAgent(t, nil, "gotest.Many", "")
	id := agentID(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var arrived atomic.Int64
	allIn := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(allIn) }) }
	defer release() // so that no handler waits past a failure
	serveOnQueue(t, agent, func(action string, args, kwargs json.RawMessage) (any, error) {
		if arrived.Add(1) == n {
			release()
		}
		select {
		case <-allIn:
		case <-ctx.Done():
		}
		return calcHandler(action, args, kwargs)
	})
	before := osThreads(t)
	peak := atomic.Int64{}
	peak.Store(int64(before))
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if th := int64(osThreads(t)); th > peak.Load() {
				peak.Store(th)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	var wg sync.WaitGroup
	var wrong atomic.Int64
	var firstErr sync.Once
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := user.ActionAsync(ctx, id, "add", []any{i, n}, nil)
			if err != nil || string(r) != fmt.Sprint(i+n) {
				wrong.Add(1)
				firstErr.Do(func() { t.Errorf("add(%d, %d): %s %v", i, n, r, err) })
			}
		}(i)
	}
	wg.Wait()
	close(stopSampling)
	<-sampled
	if a := arrived.Load(); a != n {
		t.Fatalf("%d of %d requests reached the agent", a, n)
	}
	if w := wrong.Load(); w != 0 {
		t.Fatalf("%d of %d results wrong or failed", w, n)
	}
	t.Logf("%d actions in flight at once: OS threads %d before, %d at the peak, %d after", n, before, peak.Load(), osThreads(t))
	if p := peak.Load(); p > maxThreads {
		t.Fatalf("%d OS threads at the peak, want at most %d", p, maxThreads)
	}
}
