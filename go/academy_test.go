package academy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	f, err := NewFactory(exchange(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	user, err = f.NewUserClient("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { user.Close() })
	reg, err = user.RegisterAgent(agentType, name)
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
